"""Rows in django-ray's execution table for Celery task runs, so the admin shows both paths.

Only when Django is configured with ``django_ray``; otherwise nothing is written.
The Celery result backend stays the source of Celery results: a row holds the
state, timestamps, Ray ids and errors, never the return value. A row that
cannot be written is logged and skipped: it never changes what Celery sees.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import uuid
from datetime import datetime
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Protocol

from celery_bridge.completion import Completion, Job, Kind
from django_ray.runtime.job import describe_error

if TYPE_CHECKING:
    from celery_bridge.config import BridgeSettings

logger = logging.getLogger("celery_bridge")

# Row ids are derived from Celery task ids, so every run of one task id (its
# retries) updates the same row.
ROW_NAMESPACE = uuid.UUID("5b0c1d2e-7f3a-4c8e-9a61-2d4e8f0b6c13")


class ExecutionRecords(Protocol):
    def started(self, job: Job) -> None: ...

    def record(self, completion: Completion) -> None: ...

    def close(self, timeout: float = ...) -> None: ...


class NoRecords:
    """Django is not configured with ``django_ray`` (or recording is off)."""

    def started(self, job: Job) -> None:
        pass

    def record(self, completion: Completion) -> None:
        pass

    def close(self, timeout: float = 0) -> None:
        pass


NO_RECORDS = NoRecords()


def records_for(settings: BridgeSettings, hostname: str) -> ExecutionRecords:
    return DjangoRecords(hostname) if settings.record_executions else NO_RECORDS


def row_id(celery_task_id: str) -> uuid.UUID:
    return uuid.uuid5(ROW_NAMESPACE, celery_task_id)


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

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        self._events: SimpleQueue[Event | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="celery-bridge-rows", daemon=True)
        self._thread.start()

    def started(self, job: Job) -> None:
        self._events.put(("started", job, _now()))

    def record(self, completion: Completion) -> None:
        self._events.put(("record", completion, _now()))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer (waiting up to ``timeout``)."""
        self._events.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("django_ray pool: execution rows still being written at shutdown")

    def _run(self) -> None:
        from django.db import connection

        try:
            while True:
                batch = [self._events.get()]
                while True:
                    try:
                        batch.append(self._events.get_nowait())
                    except Empty:
                        break
                self._write([event for event in batch if event is not None])
                if None in batch:
                    return
        finally:
            connection.close()  # this thread's own

    def _write(self, events: list[Event]) -> None:
        for kind, run in itertools.groupby(events, key=lambda event: event[0]):
            if kind == "started":
                rows = [row for row in map(self._row, run) if row is not None]
                self._safely(self._upsert, rows)
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
            logger.warning("django_ray pool: could not record %r", args[0], exc_info=True)

    def _row(self, event: Event) -> Any:
        """The row a run's start writes (None, logged, if it cannot be built)."""
        from django_ray.models import Origin, Runner, State, TaskExecution

        _, job, at = event
        try:
            request = job.request
            delivery = request.get("delivery_info") or {}
            args, kwargs = _arguments(job)
            return TaskExecution(
                pk=row_id(job.task_id),
                origin=Origin.CELERY,
                celery_task_id=job.task_id,
                task_path=job.task_name[:255],
                args=args,
                kwargs=kwargs,
                queue_name=str(delivery.get("routing_key") or "")[:100],
                priority=int(delivery.get("priority") or 0),
                runner=Runner.RAY_CORE,
                state=State.RUNNING,
                attempt=int(request.get("retries") or 0) + 1,
                worker=self._hostname[:64],
                ray_handle=job.handle,
                started_at=at,
                last_attempted_at=at,
            )
        except Exception:
            logger.warning("django_ray pool: could not record %r", job, exc_info=True)
            return None

    def _upsert(self, rows: list[Any]) -> None:
        from django_ray.models import TaskExecution

        latest = {row.pk: row for row in rows}  # a later run of the same task id wins
        TaskExecution.objects.bulk_create(
            list(latest.values()),
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=[
                "state", "attempt", "worker", "ray_handle", "started_at", "last_attempted_at",
                "finished_at", "run_after",
            ],
        )  # fmt: skip

    def _record(self, completion: Completion, now: datetime) -> None:
        from django.db.models import F

        from django_ray.models import State, TaskExecution
        from django_ray.querysets import JSONAppend

        job, kind, value = completion.job, completion.kind, completion.value
        row = TaskExecution.objects.filter(pk=row_id(job.task_id))
        if kind is Kind.LOST:
            row.update(lost_attempts=F("lost_attempts") + 1, errors=JSONAppend("errors", value))
        elif kind is Kind.HARD_TIMEOUT:
            error = _error("celery.exceptions.TimeLimitExceeded", f"TimeLimitExceeded({value})")
            row.update(state=State.FAILED, finished_at=now, errors=JSONAppend("errors", error))
        elif kind is Kind.DROPPED and job.cancelled == "terminated":
            error = _error("celery.exceptions.Terminated", "revoked with terminate=True")
            errors = JSONAppend("errors", error)
            row.update(state=State.FAILED, finished_at=now, cancelled_at=now, errors=errors)
        elif kind is Kind.RESULT and not value[0]:
            row.update(state=State.SUCCESSFUL, finished_at=now, ray_handle=job.handle)
        elif kind in (Kind.RESULT, Kind.ERROR):
            info = value[1] if kind is Kind.RESULT else value
            error = {**describe_error(_unwrapped(info.exception)), "traceback": info.traceback}
            retrying = error["exception_class_path"] == "celery.exceptions.Retry"
            row.update(
                state=State.READY if retrying else State.FAILED,
                finished_at=None if retrying else now,
                errors=JSONAppend("errors", error),
            )


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


def _error(path: str, message: str) -> dict[str, Any]:
    return {
        "exception_class_path": path,
        "exception_bases": [],
        "message": message,
        "traceback": "",
    }


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
