"""Rows in django-ray's execution table for Celery task runs, so the admin shows both paths.

Only when Django is configured with ``django_ray``; otherwise nothing is written.
The Celery result backend stays the source of Celery results: a row holds the
state, timestamps, Ray ids and errors, never the return value. A row that
cannot be written is logged and skipped: it never changes what Celery sees.
Each change goes through :mod:`django_ray.lifecycle.celery`.

The worker also holds a lease row while it runs (origin ``celery``, heartbeat
from the writer's thread), so status and doctor see its tasks as in flight.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from datetime import datetime
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Protocol

from celery_bridge.runs import Completion, Job, Kind

if TYPE_CHECKING:
    from celery_bridge.config import BridgeSettings
    from django_ray.lifecycle.celery import CeleryRun
    from django_ray.worker.leases import Lease

logger = logging.getLogger("celery_bridge")


class ExecutionRecords(Protocol):
    def started(self, job: Job) -> None: ...

    def record(self, completion: Completion) -> None: ...

    def resize(self, concurrency: int) -> None: ...

    def close(self, timeout: float = ...) -> None: ...


class NoRecords:
    """Django is not configured with ``django_ray`` (or recording is off)."""

    def started(self, job: Job) -> None:
        pass

    def record(self, completion: Completion) -> None:
        pass

    def resize(self, concurrency: int) -> None:
        pass

    def close(self, timeout: float = 0) -> None:
        pass


NO_RECORDS = NoRecords()


def records_for(
    settings: BridgeSettings, hostname: str, queues: list[str], concurrency: int
) -> ExecutionRecords:
    if not settings.record_executions:
        return NO_RECORDS
    from django_ray.conf import get_settings
    from django_ray.states import Origin, Runner
    from django_ray.worker.leases import Lease

    django = get_settings()
    lease = Lease(
        hostname[:64],
        queues=queues,
        concurrency=concurrency,
        runner=Runner.RAY_CORE,
        heartbeat_seconds=django.worker_heartbeat_seconds,
        lease_seconds=django.worker_lease_seconds,
        ray_address=settings.ray_address,
        origin=Origin.CELERY,
    )
    return DjangoRecords(hostname, lease=lease)


# What the event loop hands the writer: ("started", Job) or ("record", Completion),
# with the moment it happened; None asks the writer to finish.
Event = tuple[str, Any, datetime]


class DjangoRecords:
    """One ``TaskExecution`` per Celery task id (origin ``celery``), updated per run.

    The worker's event loop only queues what happened; a thread of its own
    writes it, in order, with the starts that follow each other as one upsert.
    Consuming and acknowledging never wait on the database (a start written
    inline cost about 3 ms, a third of the loop's time at 100 tasks/s).
    """

    def __init__(self, hostname: str, *, lease: Lease | None = None) -> None:
        self._hostname = hostname
        self._lease = lease
        self._events: SimpleQueue[Event | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="celery-bridge-rows", daemon=True)
        self._thread.start()

    def started(self, job: Job) -> None:
        self._events.put(("started", job, _now()))

    def record(self, completion: Completion) -> None:
        self._events.put(("record", completion, _now()))

    def resize(self, concurrency: int) -> None:
        self._events.put(("resize", concurrency, _now()))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer (waiting up to ``timeout``)."""
        self._events.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("django_ray pool: execution rows still being written at shutdown")

    def _run(self) -> None:
        from django.db import connection

        try:
            self._safely(self._lease_call, "acquire")
            while True:
                batch = self._next_batch()
                self._write([event for event in batch if event is not None])
                self._safely(self._lease_call, "heartbeat_if_due")
                if None in batch:
                    self._safely(self._lease_call, "release")
                    return
        finally:
            connection.close()  # this thread's own

    def _next_batch(self) -> list[Event | None]:
        wait = self._lease.heartbeat_seconds if self._lease is not None else None
        try:
            batch = [self._events.get(timeout=wait)]
        except Empty:
            return []
        while True:
            try:
                batch.append(self._events.get_nowait())
            except Empty:
                return batch

    def _lease_call(self, method: str) -> None:
        if self._lease is not None:
            getattr(self._lease, method)()

    def _write(self, events: list[Event]) -> None:
        from django_ray.lifecycle import celery as rows

        for kind, run in itertools.groupby(events, key=lambda event: event[0]):
            if kind == "started":
                started = [(row, at) for _, job, at in run if (row := self._run_of(job))]
                self._safely(rows.started, started)
            elif kind == "resize" and self._lease is not None:
                for _, concurrency, _ in run:
                    self._safely(self._lease.resize, concurrency)
            else:
                for _, completion, at in run:
                    self._safely(self._record, completion, at)

    def _safely(self, write: Any, *args: Any) -> None:
        from django.db import InterfaceError, OperationalError, connection

        try:
            try:
                write(*args)
            except (InterfaceError, OperationalError):
                # A connection the database dropped (restart, idle timeout): once more
                # on a new one. The writer keeps its connection between writes.
                connection.close()
                write(*args)
        except Exception:
            logger.warning("django_ray pool: could not record %r", args[:1], exc_info=True)

    def _run_of(self, job: Job) -> CeleryRun | None:
        """What a run's row records (None, logged, if it cannot be read from the job)."""
        from django_ray.lifecycle.celery import CeleryRun

        try:
            request = job.request
            delivery = request.get("delivery_info") or {}
            args, kwargs = _arguments(job)
            return CeleryRun(
                task_id=job.task_id,
                task_name=job.task_name,
                attempt=int(request.get("retries") or 0) + 1,
                worker=self._hostname,
                args=args,
                kwargs=kwargs,
                queue_name=str(delivery.get("routing_key") or ""),
                priority=int(delivery.get("priority") or 0),
                ray_handle=job.handle,
            )
        except Exception:
            logger.warning("django_ray pool: could not record %r", job, exc_info=True)
            return None

    def _record(self, completion: Completion, now: datetime) -> None:
        from celery.exceptions import Terminated, TimeLimitExceeded

        from django_ray.lifecycle import celery as rows
        from django_ray.lifecycle.errors import error_data

        job, kind, value = completion.job, completion.kind, completion.value
        run = self._run_of(job)
        if run is None:
            return
        if kind is Kind.LOST:
            rows.lost(run, value)
        elif kind is Kind.HARD_TIMEOUT:
            rows.failed(run, error_data(TimeLimitExceeded, f"TimeLimitExceeded({value})"), now)
        elif kind is Kind.DROPPED and job.cancelled == "terminated":
            error = error_data(Terminated, "revoked with terminate=True")
            rows.failed(run, error, now, cancelled=True)
        elif kind is Kind.RESULT and not value[0]:
            rows.succeeded(run, now)
        elif kind in (Kind.RESULT, Kind.ERROR):
            info = value[1] if kind is Kind.RESULT else value
            error = error_data(_unwrapped(info.exception), traceback=info.traceback)
            if error["exception_class_path"] == "celery.exceptions.Retry":
                rows.retrying(run, error)
            else:
                rows.failed(run, error, now)


def _now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def _unwrapped(exc: BaseException) -> BaseException:
    from billiard.einfo import ExceptionWithTraceback
    from celery.utils.serialization import get_pickled_exception

    if isinstance(exc, ExceptionWithTraceback):
        exc = exc.exc
    unwrapped: BaseException = get_pickled_exception(exc)
    return unwrapped


def _arguments(job: Job) -> tuple[list[Any], dict[str, Any]]:
    """The task's arguments as JSON, when the message is JSON; else empty."""
    _, _, _, body, content_type, encoding = job.trace_args
    if content_type != "application/json":
        return [], {}
    from kombu.serialization import loads

    args, kwargs, _ = loads(body, content_type, encoding, accept={"application/json"})
    # kombu's JSON revives dates and UUIDs; the row stores plain JSON.
    plain = json.loads(json.dumps([list(args), dict(kwargs)], default=str))
    return plain[0], plain[1]
