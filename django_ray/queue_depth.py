"""Queue depth for the metrics: the one figure read from the database on a scrape.

One aggregate query over READY rows (and the Celery pool's RUNNING ones), served
by their indexes, whatever the size of the finished history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import Count, Q
from django.utils import timezone

from django_ray.states import Origin, State

logger = logging.getLogger("django_ray.metrics")


class QueueDepthCollector:
    """``django_ray_queue_depth`` and ``django_ray_queue_due`` per queue (Django Tasks rows, the
    ones Django workers claim), and ``django_ray_celery_tasks`` per queue and state (rows of
    the Celery pool's tasks), all from one query when scraped."""

    def describe(self) -> Iterator[Any]:
        yield from self._families()

    def collect(self) -> Iterator[Any]:
        depth, due, up, celery = self._families()
        try:
            counts, celery_counts = queue_depths()
        except DatabaseError as exc:
            logger.warning("Queue depth for the metrics could not be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        for queue, (ready, claimable) in sorted(counts.items()):
            depth.add_metric([queue], ready)
            due.add_metric([queue], claimable)
        for (queue, state), count in sorted(celery_counts.items()):
            celery.add_metric([queue, state], count)
        up.add_metric([], 1)
        yield from (depth, due, up, celery)

    @staticmethod
    def _families() -> tuple[Any, Any, Any, Any]:
        from prometheus_client.core import GaugeMetricFamily

        return (
            GaugeMetricFamily(
                "django_ray_queue_depth",
                "READY tasks per queue, due or not (deferred and backed-off included).",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "django_ray_queue_due",
                "READY tasks per queue whose run_after has passed: claimable now.",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "django_ray_queue_depth_up",
                "1 if the queue depth query answered on this scrape, 0 if the database did not.",
            ),
            GaugeMetricFamily(
                "django_ray_celery_tasks",
                "Rows of Celery tasks run by the django_ray pool, READY (a retry pending) or "
                "RUNNING, per queue.",
                labels=["queue", "state"],
            ),
        )


def queue_depths(
    now: datetime | None = None,
) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, str], int]]:
    """(READY, due READY) Django Tasks rows per queue, and Celery rows per (queue, state),
    in one aggregate query.

    Every queue configured in ``TASKS`` for a django-ray backend is present,
    with (0, 0) when it holds nothing. The query leaves the database connection
    as it found it, so a scrape from a metrics server thread does not leave one
    open behind it.
    """
    from django_ray.models import TaskExecution

    now = now or timezone.now()
    # OR, not IN: PostgreSQL matches each term to its state's partial index.
    rows = TaskExecution.objects.filter(
        Q(state=State.READY) | Q(state=State.RUNNING, origin=Origin.CELERY)
    )
    connection = connections[rows.db]
    opened_here = connection.connection is None
    found: dict[str, tuple[int, int]] = {}
    celery: dict[tuple[str, str], int] = {}
    try:
        for origin, queue, state, count, due in (
            rows.order_by()
            .values_list("origin", "queue_name", "state")
            .annotate(
                count=Count("pk"),
                due=Count("pk", filter=Q(run_after__isnull=True) | Q(run_after__lte=now)),
            )
        ):
            if origin == Origin.CELERY:
                celery[(queue, state)] = count
            else:
                found[queue] = (count, due)
    finally:
        if opened_here and not connection.in_atomic_block:
            connection.close()
    return {**dict.fromkeys(configured_queues(), (0, 0)), **found}, celery


def configured_queues() -> set[str]:
    """The queues of every django-ray backend in ``TASKS``."""
    from django.tasks import task_backends

    from django_ray.backends import RayTaskBackend

    return {
        queue
        for backend in task_backends.all()
        if isinstance(backend, RayTaskBackend)
        for queue in backend.queues
    }
