"""Fixtures for the operating tests: a fresh set of metrics, and a scrape parsed to samples."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from django_ray import metrics


@pytest.fixture
def fresh_metrics() -> Iterator[metrics.TaskMetrics]:
    """This process's metrics, new for the test, so every value starts from zero."""
    metrics.prometheus.cache_clear()
    metrics.task_metrics.cache_clear()
    yield metrics.task_metrics()
    metrics.prometheus.cache_clear()
    metrics.task_metrics.cache_clear()


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))
