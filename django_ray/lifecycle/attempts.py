"""What a Django worker does to the rows it runs: each change one UPDATE, fenced once.

A claim starts an attempt: the row goes RUNNING with the attempt number raised
and a fresh claim token. From then on every change is made by
:func:`_update_owned`, only while that attempt (and the worker it names) still
owns the row, so a late or duplicate completion can never overwrite a newer state.
A batch does the same through the ORM, or in one statement on PostgreSQL
(:mod:`django_ray.lifecycle.postgres`).

The in-memory row is updated to what was written, so callers can announce it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from django_ray.lifecycle import postgres
from django_ray.models import TaskExecution
from django_ray.querysets import JSONAppend
from django_ray.states import State


def claim(
    limit: int,
    *,
    worker_id: str,
    queues: Iterable[str],
    runner: str,
    backend: str = "default",
) -> list[TaskExecution]:
    """Start the next attempt of up to ``limit`` claimable rows, for this worker.

    On PostgreSQL this is one statement: concurrent workers skip each other's
    locked rows. On SQLite writers are serialized. Either way the UPDATE
    re-checks READY and stamps a fresh claim token, and only rows carrying that
    token are returned, in claim order, so no row is ever claimed twice.
    """
    if limit <= 0:
        return []
    now, token = timezone.now(), uuid.uuid4()
    picked = TaskExecution.objects.claimable(queues, now, backend)[:limit]
    if picked.db_connection.vendor == "postgresql":
        rows = postgres.claim(picked, now=now, token=token, worker_id=worker_id, runner=runner)
        return sorted(rows, key=lambda row: (-row.priority, row.enqueued_at, str(row.pk)))
    with transaction.atomic(using=picked.db):
        ids = list(picked.select_for_update(skip_locked=True).values_list("pk", flat=True))
        if not ids:
            return []
        TaskExecution.objects.filter(pk__in=ids, state=State.READY).update(
            state=State.RUNNING,
            attempt=F("attempt") + 1,
            claim_token=token,
            worker=worker_id,
            worker_ids=JSONAppend("worker_ids", worker_id),
            runner=runner,
            started_at=Coalesce("started_at", Value(now)),
            last_attempted_at=now,
            monitor_heartbeat_at=now,
        )
    claimed = TaskExecution.objects.filter(pk__in=ids, claim_token=token)
    return list(claimed.order_by("-priority", "enqueued_at", "id"))


def succeed(
    row: TaskExecution, *, value: Any, now: datetime, reference: dict[str, Any] | None = None
) -> bool:
    """Record this attempt's return value (inline, or the pointer to where it is stored);
    False, changing nothing, if the attempt no longer owns the row."""
    owned = _update_owned(
        row, state=State.SUCCESSFUL, finished_at=now, result_data=value, result_reference=reference
    )
    row.state, row.finished_at = State.SUCCESSFUL, now
    row.result_data, row.result_reference = value, reference
    return owned


def succeed_many(items: list[tuple[TaskExecution, Any, Any]], now: datetime) -> set[str]:
    """:func:`succeed` for many (row, value, reference); returns the ids recorded.

    One statement on PostgreSQL, whatever the count. Rows are updated in memory
    only if recorded.
    """
    if not items:
        return set()
    rows = TaskExecution.objects.all()
    if rows.db_connection.vendor == "postgresql":
        owned = postgres.succeed(rows, items, now)
        for row, value, reference in items:
            if str(row.pk) in owned:
                row.state, row.finished_at = State.SUCCESSFUL, now
                row.result_data, row.result_reference = value, reference
        return owned
    return {
        str(row.pk)
        for row, value, reference in items
        if succeed(row, value=value, reference=reference, now=now)
    }


def retry(
    row: TaskExecution, *, error: dict[str, Any], run_after: datetime, lost: bool = False
) -> bool:
    """Record this attempt's error and put the row back in the queue for ``run_after``."""
    owned = _update_owned(
        row,
        state=State.READY,
        run_after=run_after,
        claim_token=None,
        worker="",
        ray_status="",
        **_error_fields(row, error, lost),
    )
    row.state, row.run_after = State.READY, run_after
    _remember_error(row, error)
    return owned


def fail(row: TaskExecution, *, error: dict[str, Any], now: datetime, lost: bool = False) -> bool:
    """Record this attempt's error as final."""
    owned = _update_owned(
        row, state=State.FAILED, finished_at=now, **_error_fields(row, error, lost)
    )
    row.state, row.finished_at = State.FAILED, now
    _remember_error(row, error)
    return owned


def hand_back(row: TaskExecution) -> bool:
    """Put this attempt's row back in the queue, due now (a worker stopping; not a failure).

    The attempt number stays raised: the next claim is the next attempt.
    """
    owned = _update_owned(
        row, state=State.READY, run_after=None, claim_token=None, worker="", ray_status=""
    )
    row.state = State.READY
    return owned


def adopt(row: TaskExecution, worker_id: str, now: datetime) -> bool:
    """Take over monitoring this attempt from a worker whose lease expired."""
    if not _update_owned(row, worker=worker_id, monitor_heartbeat_at=now):
        return False
    row.worker, row.monitor_heartbeat_at = worker_id, now
    return True


def write_handles(rows: list[TaskExecution]) -> None:
    """Store each row's ``ray_handle`` while its attempt owns it; one statement on
    PostgreSQL."""
    if not rows:
        return
    table = TaskExecution.objects.all()
    if table.db_connection.vendor == "postgresql":
        postgres.write_handles(table, rows)
        return
    for row in rows:
        TaskExecution.objects.owned_by(row.pk, row.attempt, row.claim_token).update(
            ray_handle=row.ray_handle
        )


def beat(worker_id: str, ids: Iterable[str], now: datetime) -> None:
    """The monitor heartbeat: this worker still watches these attempts."""
    TaskExecution.objects.held_by(worker_id, ids).update(monitor_heartbeat_at=now)


def note_node(row: TaskExecution, attempt: int, node: str) -> None:
    """The Ray node an attempt that recorded itself ran on (a Ray Job's driver cannot tell;
    the worker learns it from Ray), while no later attempt has begun."""
    if node:
        TaskExecution.objects.filter(pk=row.pk, attempt=attempt).update(ray_node=node)


def report_ray_status(worker_id: str, ids: Iterable[str], status: str) -> None:
    """What Ray last said of these attempts (e.g. PENDING while they wait for resources)."""
    TaskExecution.objects.held_by(worker_id, ids).update(ray_status=status)


def _error_entry(row: TaskExecution, error: dict[str, Any]) -> dict[str, Any]:
    """The error as the row keeps it: with the attempt, its worker, its Ray handle and the
    Ray node it ran on ("" when unknown: a lost attempt does not say)."""
    return {
        **error,
        "attempt": row.attempt,
        "worker": row.worker,
        "ray_handle": row.ray_handle,
        "node": row.ray_node,
    }


def _error_fields(row: TaskExecution, error: dict[str, Any], lost: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"errors": JSONAppend("errors", _error_entry(row, error))}
    if lost:
        fields["lost_attempts"] = F("lost_attempts") + 1
    return fields


def _remember_error(row: TaskExecution, error: dict[str, Any]) -> None:
    row.errors = [*row.errors, _error_entry(row, error)]


def _update_owned(row: TaskExecution, **fields: Any) -> bool:
    """The fence: one UPDATE, only while this attempt (and the worker it knows) owns the row.

    Comparing the worker too means a worker whose lease lapsed and whose
    attempt was adopted by another can no longer write over it.
    """
    fields.setdefault("monitor_heartbeat_at", None)
    if row.ray_node:  # where the attempt ran, as its outcome said
        fields.setdefault("ray_node", row.ray_node)
    if row.ray_handle:  # the worker may not have written it yet (see the worker loop)
        fields.setdefault("ray_handle", row.ray_handle)
    owned = TaskExecution.objects.owned_by(row.pk, row.attempt, row.claim_token)
    return owned.filter(worker=row.worker).update(**fields) == 1
