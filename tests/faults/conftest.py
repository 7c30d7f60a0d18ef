"""Fixtures of the fault-injection suite: worker processes that never outlive their test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faults.helpers import Markers, WorkerProcess


@pytest.fixture
def markers(tmp_path) -> Markers:
    return Markers(tmp_path / "marks")


@pytest.fixture
def spawn(ray_cluster, tmp_path, request) -> Iterator[Callable[..., WorkerProcess]]:
    """Start a worker process (``spawn(name=..., runner=..., ...)``); all are stopped at the
    end, and their logs printed if the test failed."""
    started: list[WorkerProcess] = []

    def start(*, cluster: Any = None, **options: Any) -> WorkerProcess:
        options.setdefault("name", f"worker-{len(started) + 1}")
        worker = WorkerProcess(cluster or ray_cluster, tmp_path, **options)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.request_stop()
    for worker in started:
        worker.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for worker in started:
            print(worker.output()[-6000:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
