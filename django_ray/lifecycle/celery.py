"""The rows of tasks the Celery pool runs: origin ``celery``, one row per Celery task id.

Celery owns these tasks (its broker, acks and result backend); the row mirrors
what happened, so the admin and status show both paths. Every run of one task
id (Celery's own retries) updates the same row; a change made for one run is
fenced by that run's attempt (Celery's ``retries + 1``), so a late report of an
earlier run never overwrites a later one. Django workers never move these rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F

from django_ray.models import TaskExecution
from django_ray.querysets import JSONAppend
from django_ray.states import Origin, Runner, State

# Row ids are derived from Celery task ids, so every run of one task id (its
# retries) updates the same row.
ROW_NAMESPACE = uuid.UUID("5b0c1d2e-7f3a-4c8e-9a61-2d4e8f0b6c13")


def row_id(celery_task_id: str) -> uuid.UUID:
    return uuid.uuid5(ROW_NAMESPACE, celery_task_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class CeleryRun:
    """One run of a Celery task, as its row records it."""

    task_id: str
    task_name: str
    attempt: int
    worker: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue_name: str = ""
    priority: int = 0
    ray_handle: str = ""


def started(runs: list[tuple[CeleryRun, datetime]]) -> None:
    """Runs started on Ray: each row RUNNING for its run, in one upsert (a later run of the
    same task id wins)."""
    rows = {
        row_id(run.task_id): TaskExecution(
            pk=row_id(run.task_id),
            origin=Origin.CELERY,
            celery_task_id=run.task_id,
            task_path=run.task_name[:255],
            args=run.args,
            kwargs=run.kwargs,
            queue_name=run.queue_name[:100],
            priority=run.priority,
            runner=Runner.RAY_CORE,
            state=State.RUNNING,
            attempt=run.attempt,
            worker=run.worker[:64],
            ray_handle=run.ray_handle,
            started_at=at,
            last_attempted_at=at,
        )
        for run, at in runs
    }
    TaskExecution.objects.bulk_create(
        list(rows.values()),
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=[
            "state", "attempt", "worker", "ray_handle", "started_at", "last_attempted_at",
            "finished_at", "run_after",
        ],
    )  # fmt: skip


def succeeded(run: CeleryRun, now: datetime) -> bool:
    return _update(run, state=State.SUCCESSFUL, finished_at=now, ray_handle=run.ray_handle)


def failed(
    run: CeleryRun, error: dict[str, Any], now: datetime, *, cancelled: bool = False
) -> bool:
    """The run ended FAILED (its exception, a time limit, a revoke with terminate)."""
    extra = {"cancelled_at": now} if cancelled else {}
    return _update(run, state=State.FAILED, finished_at=now, errors=_append(error), **extra)


def retrying(run: CeleryRun, error: dict[str, Any]) -> bool:
    """The task called ``self.retry``: Celery sends it again; the row waits READY."""
    return _update(run, state=State.READY, finished_at=None, errors=_append(error))


def lost(run: CeleryRun, error: dict[str, Any]) -> bool:
    """Ray lost the run's worker; the pool runs it again (the row stays RUNNING)."""
    return _update(run, lost_attempts=F("lost_attempts") + 1, errors=_append(error))


def _append(error: dict[str, Any]) -> JSONAppend:
    return JSONAppend("errors", error)


def _update(run: CeleryRun, **fields: Any) -> bool:
    rows = TaskExecution.objects.of_celery().filter(pk=row_id(run.task_id), attempt=run.attempt)
    return rows.update(**fields) == 1
