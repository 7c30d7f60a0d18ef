"""The one SQL helper: state changes of many rows in one statement, on PostgreSQL.

Each function does what :mod:`django_ray.lifecycle.attempts` does row by row
through the ORM elsewhere, with the same fence. Batches take one array per
column (``unnest(%s::uuid[], ...)``), so a statement has the same few
placeholders whatever the batch size, and building it costs nothing per row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections

from django_ray.states import State

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from django_ray.models import TaskExecution


def claim(
    picked: QuerySet[TaskExecution],
    *,
    now: datetime,
    token: uuid.UUID,
    worker_id: str,
    runner: str,
) -> list[TaskExecution]:
    """Lock, update and return the ``picked`` rows in one round trip, in autocommit.

    ``picked`` is ``claimable()[:n]``, compiled by Django and locked ``FOR UPDATE
    SKIP LOCKED`` in a CTE, which is evaluated once (it has side effects, so it is
    never inlined) and walks ``django_ray_claim_idx`` in claim order; the UPDATE
    re-checks READY on the locked rows, so concurrent claimers skip each other.
    """
    model = picked.model
    table = model._meta.db_table
    columns = ", ".join(f't."{field.column}"' for field in model._meta.concrete_fields)
    picked_sql, picked_params = picked.values("pk").query.sql_with_params()
    sql = (
        f"WITH picked AS ({picked_sql} FOR UPDATE SKIP LOCKED) "
        f'UPDATE "{table}" AS t SET state = %s, attempt = t.attempt + 1, '
        "claim_token = %s, worker = %s, "
        "worker_ids = COALESCE(t.worker_ids, '[]'::jsonb) || jsonb_build_array(%s::text), "
        "runner = %s, started_at = COALESCE(t.started_at, %s), last_attempted_at = %s, "
        "monitor_heartbeat_at = %s "
        f"FROM picked WHERE t.id = picked.pk AND t.state = %s RETURNING {columns}"
    )
    params = [
        *picked_params,
        State.RUNNING, token, worker_id, worker_id, runner, now, now, now, State.READY,
    ]  # fmt: skip
    return list(model.objects.db_manager(picked.db).raw(sql, params))


def succeed(
    rows: QuerySet[TaskExecution], items: list[tuple[TaskExecution, Any, Any]], now: datetime
) -> set[str]:
    """Record (row, value, reference) successes, each fenced by attempt, claim token and
    worker; returns the ids recorded."""
    table = rows.model._meta.db_table
    columns = _columns(
        (row.pk, row.attempt, row.claim_token, row.worker, row.ray_handle, _json(v), _json(r))
        for row, v, r in items
    )
    sql = (
        f"UPDATE \"{table}\" AS t SET state = 'SUCCESSFUL', finished_at = %s, "
        "monitor_heartbeat_at = NULL, result_data = v.result, result_reference = v.ref, "
        "ray_handle = v.handle "
        "FROM unnest(%s::uuid[], %s::integer[], %s::uuid[], %s::text[], %s::text[], "
        "%s::jsonb[], %s::jsonb[]) AS v(id, attempt, token, worker, handle, result, ref) "
        "WHERE t.id = v.id AND t.attempt = v.attempt AND t.claim_token = v.token "
        "AND t.worker = v.worker AND t.state = 'RUNNING' RETURNING t.id"
    )
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, [now, *columns])
        return {str(pk) for (pk,) in cursor.fetchall()}


def write_handles(rows: QuerySet[TaskExecution], owners: list[TaskExecution]) -> None:
    """Store each row's ``ray_handle`` while its attempt owns it."""
    table = rows.model._meta.db_table
    columns = _columns((row.pk, row.attempt, row.claim_token, row.ray_handle) for row in owners)
    with connections[rows.db].cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" AS t SET ray_handle = v.handle '
            "FROM unnest(%s::uuid[], %s::integer[], %s::uuid[], %s::text[]) "
            "AS v(id, attempt, token, handle) WHERE t.id = v.id AND t.attempt = v.attempt "
            "AND t.claim_token = v.token AND t.state = 'RUNNING'",
            columns,
        )


def _columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows of values as one list per column (the arrays ``unnest()`` takes)."""
    return [list(column) for column in zip(*rows, strict=True)]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)
