"""Prometheus metrics: what a worker did, counted from its own signals, and queue depth.

Counters, histograms and the in-flight gauge are fed by receivers of
``executions_claimed`` and ``execution_finished``, so they count what the
workers of *this process* saw happen; a scrape never aggregates over the
history. Queue depth is the one figure read from the database on a scrape: one
aggregate query over READY rows, served by their indexes.

Everything lives in a registry of its own (``task_metrics().registry``), never
in prometheus_client's global one. prometheus_client is optional: without it
the receivers do nothing, :func:`metrics_view` answers 503 and
:func:`serve_metrics` raises ``ImproperlyConfigured``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.tasks import TaskResultStatus
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from django_ray.queue_depth import QueueDepthCollector
from django_ray.signals import execution_finished, executions_claimed, executions_released

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from django_ray.models import TaskExecution

logger = logging.getLogger("django_ray.metrics")

MISSING_LIBRARY = (
    "django-ray's metrics need prometheus_client (Ray installs it with ray[default]); "
    "install it with `pip install prometheus-client`."
)
# From a few milliseconds (a Ray Core call) to an hour (a long Ray Job).
SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
FINISHED_STATES = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)


@functools.cache
def prometheus() -> ModuleType | None:
    """prometheus_client, or None where it is not installed."""
    try:
        import prometheus_client
    except ImportError:
        return None
    return prometheus_client


class InFlight:
    """Attempts this process's workers claimed and have not yet seen finish, per worker.

    Keyed by (execution id, attempt), so an outcome counts against the worker
    that claimed the attempt, whatever worker id its signal carries.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claimed_by: dict[tuple[str, int], str] = {}
        self._workers: set[str] = set()

    def claimed(self, worker_id: str, attempts: Iterable[tuple[str, int]]) -> None:
        with self._lock:
            self._workers.add(worker_id)
            self._claimed_by.update(dict.fromkeys(attempts, worker_id))

    def finished(self, attempt: tuple[str, int]) -> None:
        with self._lock:
            self._claimed_by.pop(attempt, None)

    def per_worker(self) -> dict[str, int]:
        """Attempts in flight per worker, 0 for a worker seen before that holds none now."""
        with self._lock:
            counts = dict.fromkeys(self._workers, 0)
            for worker_id in self._claimed_by.values():
                counts[worker_id] += 1
        return counts

    # A prometheus_client collector of ``django_ray_in_flight{worker}``, read when scraped.
    def describe(self) -> Iterator[Any]:
        yield self._family()

    def collect(self) -> Iterator[Any]:
        family = self._family()
        for worker_id, count in sorted(self.per_worker().items()):
            family.add_metric([worker_id], count)
        yield family

    @staticmethod
    def _family() -> Any:
        from prometheus_client.core import GaugeMetricFamily

        return GaugeMetricFamily(
            "django_ray_in_flight",
            "Attempts claimed by a worker of this process and not finished yet.",
            labels=["worker"],
        )


@dataclass(frozen=True, slots=True)
class TaskMetrics:
    """The metric objects of this process, in their own registry."""

    registry: Any
    claimed: Any
    finished: Any
    retried: Any
    lost: Any
    run_seconds: Any
    wait_seconds: Any
    in_flight: InFlight


@functools.cache
def task_metrics() -> TaskMetrics:
    """This process's metrics, built on first use (tests call ``task_metrics.cache_clear()``).

    Raises ``ImproperlyConfigured`` without prometheus_client.
    """
    client = prometheus()
    if client is None:
        raise ImproperlyConfigured(MISSING_LIBRARY)
    registry = client.CollectorRegistry()
    in_flight = InFlight()
    registry.register(in_flight)
    registry.register(QueueDepthCollector())

    def counter(name: str, documentation: str, *labels: str) -> Any:
        return client.Counter(name, documentation, labels, registry=registry)

    def histogram(name: str, documentation: str, label: str) -> Any:
        return client.Histogram(
            name, documentation, [label], buckets=SECONDS_BUCKETS, registry=registry
        )

    return TaskMetrics(
        registry=registry,
        claimed=counter(
            "django_ray_attempts_claimed",
            "Attempts claimed by this process's workers, per queue.",
            "queue",
        ),
        finished=counter(
            "django_ray_tasks_finished",
            "Tasks that ended (SUCCESSFUL or FAILED, no retry to come), per task and state.",
            "task",
            "state",
        ),
        retried=counter(
            "django_ray_attempts_retried",
            "Attempts that failed and were scheduled for another attempt, per task.",
            "task",
        ),
        lost=counter(
            "django_ray_attempts_lost",
            "Attempts lost to infrastructure (Ray worker or node died, job killed), per task.",
            "task",
        ),
        run_seconds=histogram(
            "django_ray_attempt_run_seconds",
            "Run time of each attempt that ended: from its claim to its recorded end.",
            "task",
        ),
        wait_seconds=histogram(
            "django_ray_queue_wait_seconds",
            "Time from a task becoming due (enqueued, or its run_after) to its claim.",
            "queue",
        ),
        in_flight=in_flight,
    )


def _attempt(row: TaskExecution) -> tuple[str, int]:
    return str(row.pk), row.attempt


def queue_wait_seconds(row: TaskExecution) -> float:
    """How long a claimed attempt waited: from when it became due to its claim, never < 0."""
    claimed = row.last_attempted_at or timezone.now()
    due = max(row.enqueued_at, row.run_after) if row.run_after else row.enqueued_at
    return max((claimed - due).total_seconds(), 0.0)


def run_seconds(row: TaskExecution) -> float | None:
    """How long the attempt that just ended ran (None if it never started)."""
    if row.last_attempted_at is None:
        return None
    ended = row.finished_at or timezone.now()
    return max((ended - row.last_attempted_at).total_seconds(), 0.0)


@receiver(executions_claimed, dispatch_uid="django_ray.metrics.count_claimed")
def count_claimed(
    sender: Any, executions: list[TaskExecution], worker_id: str, **kwargs: Any
) -> None:
    if prometheus() is None:
        return
    metrics = task_metrics()
    for row in executions:
        metrics.claimed.labels(queue=row.queue_name).inc()
        metrics.wait_seconds.labels(queue=row.queue_name).observe(queue_wait_seconds(row))
    metrics.in_flight.claimed(worker_id, [_attempt(row) for row in executions])


@receiver(execution_finished, dispatch_uid="django_ray.metrics.count_finished")
def count_finished(sender: Any, execution: TaskExecution, outcome: Any, **kwargs: Any) -> None:
    if prometheus() is None:
        return
    metrics = task_metrics()
    metrics.in_flight.finished(_attempt(execution))
    task = execution.task_path
    if execution.state in FINISHED_STATES:
        metrics.finished.labels(task=task, state=execution.state).inc()
    else:  # READY (or already claimed again): a retry follows
        metrics.retried.labels(task=task).inc()
    if getattr(outcome, "lost", False):
        metrics.lost.labels(task=task).inc()
    seconds = run_seconds(execution)
    if seconds is not None:
        metrics.run_seconds.labels(task=task).observe(seconds)


@receiver(executions_released, dispatch_uid="django_ray.metrics.count_released")
def count_released(
    sender: Any, executions: list[TaskExecution], worker_id: str, **kwargs: Any
) -> None:
    if prometheus() is None:
        return
    metrics = task_metrics()
    for row in executions:
        metrics.in_flight.finished(_attempt(row))


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of this process's metrics (text, or OpenMetrics if asked).

    Include it in a project's URLs: ``path("metrics/", metrics_view)``. In a web
    process only queue depth moves; the counters live in worker processes,
    which serve them with ``django_ray_worker --metrics-port``.
    """
    if prometheus() is None:
        return HttpResponse(MISSING_LIBRARY, status=503, content_type="text/plain; charset=utf-8")
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(task_metrics().registry), content_type=content_type)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> WSGIServer:
    """Serve this process's metrics over HTTP from a daemon thread; returns the server.

    ``port`` 0 picks a free port (``server.server_port`` says which). Stop it
    with ``server.shutdown()``. The default address is loopback: pass
    ``"0.0.0.0"`` only where the network in front of it is trusted.
    """
    client = prometheus()
    if client is None:
        raise ImproperlyConfigured(MISSING_LIBRARY)
    server, _thread = client.start_http_server(port, addr=addr, registry=task_metrics().registry)
    logger.info(
        "Serving django-ray metrics on http://%s:%d/metrics",
        addr if ":" not in addr else f"[{addr}]",
        server.server_port,
    )
    return server
