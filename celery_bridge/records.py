"""Rows in django-ray's execution table for Celery task runs, so the admin shows both paths.

Only when Django is configured with ``django_ray``; otherwise nothing is written.
The Celery result backend stays the source of Celery results: a row holds the
state, timestamps, Ray ids and errors, never the return value. A row that
cannot be written is logged and skipped: it never changes what Celery sees.
"""

from __future__ import annotations

import json
import logging
import uuid
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


class NoRecords:
    """Django is not configured with ``django_ray`` (or recording is off)."""

    def started(self, job: Job) -> None:
        pass

    def record(self, completion: Completion) -> None:
        pass


NO_RECORDS = NoRecords()


def records_for(settings: BridgeSettings, hostname: str) -> ExecutionRecords:
    return DjangoRecords(hostname) if settings.record_executions else NO_RECORDS


def row_id(celery_task_id: str) -> uuid.UUID:
    return uuid.uuid5(ROW_NAMESPACE, celery_task_id)


class DjangoRecords:
    """One ``TaskExecution`` per Celery task id (origin ``celery``), updated per run."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname

    def started(self, job: Job) -> None:
        self._safely(self._started, job)

    def record(self, completion: Completion) -> None:
        self._safely(self._record, completion)

    def _safely(self, write: Any, item: Any) -> None:
        from django.db import InterfaceError, OperationalError, connection

        try:
            try:
                write(item)
            except (InterfaceError, OperationalError):
                # A connection the database dropped (restart, idle timeout): once more
                # on a new one. The worker keeps its connection between writes.
                connection.close()
                write(item)
        except Exception:
            logger.warning("django_ray pool: could not record %r", item, exc_info=True)

    def _started(self, job: Job) -> None:
        from django.utils import timezone

        from django_ray.models import Origin, Runner, State, TaskExecution

        now = timezone.now()
        request = job.request
        delivery = request.get("delivery_info") or {}
        args, kwargs = _arguments(job)
        TaskExecution.objects.update_or_create(
            pk=row_id(job.task_id),
            defaults={
                "state": State.RUNNING,
                "attempt": int(request.get("retries") or 0) + 1,
                "worker": self._hostname[:64],
                "ray_handle": job.handle,
                "started_at": now,
                "last_attempted_at": now,
                "finished_at": None,
                "run_after": None,
            },
            create_defaults={
                "origin": Origin.CELERY,
                "celery_task_id": job.task_id,
                "task_path": job.task_name[:255],
                "args": args,
                "kwargs": kwargs,
                "queue_name": str(delivery.get("routing_key") or "")[:100],
                "priority": int(delivery.get("priority") or 0),
                "runner": Runner.RAY_CORE,
                "state": State.RUNNING,
                "attempt": int(request.get("retries") or 0) + 1,
                "worker": self._hostname[:64],
                "ray_handle": job.handle,
                "started_at": now,
                "last_attempted_at": now,
            },
        )

    def _record(self, completion: Completion) -> None:
        from django.db.models import F
        from django.utils import timezone

        from django_ray.models import State, TaskExecution
        from django_ray.querysets import JSONAppend

        job, kind, value = completion.job, completion.kind, completion.value
        now = timezone.now()
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
