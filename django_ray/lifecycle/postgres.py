"""The one SQL helper: new rows and state changes of many rows in one statement, on PostgreSQL.

Each function does what the ORM does elsewhere (``bulk_create()``, or
:mod:`django_ray.lifecycle.attempts` row by row, with the same fence). A statement
has the same few placeholders whatever the batch size: state changes take one
array per column (``unnest(%s::uuid[], ...)``), new rows one JSON document.
"""

from __future__ import annotations

import functools
import json
import operator
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections, models

from django_ray.states import State

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from django_ray.models import TaskExecution


def insert_ready(
    rows: list[TaskExecution], *, per_row: tuple[str, ...], per_task: tuple[str, ...], using: str
) -> None:
    """Insert new rows of one task in one statement, so the table's trigger sends one NOTIFY
    per queue.

    Each column in ``per_task`` takes one value (the first row's: the same in all),
    each in ``per_row`` one value per row, and every other column its model default,
    written into the statement. Many rows travel as one JSON array of their
    ``per_row`` values, which the server takes apart: quoting one string costs
    little, where an array per column costs a conversion per value. Values are
    those ``enqueue()`` makes: JSON, str, numbers, UUIDs, datetimes.
    """
    connection = connections[using]
    model = type(rows[0])
    many = len(rows) > 1
    sql, placeholders = _insert_sql(model, per_row, per_task, using, many=many)
    json_fields = _json_fields(model)
    params: list[Any] = [
        json.dumps(value) if name in json_fields and value is not None else value
        for name in placeholders
        for value in [getattr(rows[0], name)]
    ]
    if many:
        fields = {field.attname: field for field in model._meta.concrete_fields}
        columns = [_as_json(fields[name], map(operator.attrgetter(name), rows)) for name in per_row]
        params.append(json.dumps(list(zip(*columns, strict=True)), allow_nan=False))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@functools.cache
def _insert_sql(
    model: type[TaskExecution],
    per_row: tuple[str, ...],
    per_task: tuple[str, ...],
    using: str,
    *,
    many: bool,
) -> tuple[str, tuple[str, ...]]:
    """The statement, and the column each of its placeholders stands for, in order: one row
    as ``VALUES``, many as ``SELECT`` from the elements of one JSON array, the last
    placeholder."""
    connection = connections[using]
    ops: Any = connection.ops  # PostgreSQL's, which can quote a value (compose_sql)
    quote = ops.quote_name
    fields = model._meta.concrete_fields
    values, placeholders = [], []
    for field in fields:
        name, cast = field.attname, _cast(field, connection)
        if name in per_row and many:
            at = per_row.index(name)
            values.append(f"v -> {at}" if cast == "jsonb" else f"(v ->> {at})::{cast}")
        elif name in per_row or name in per_task:
            values.append(f"%s::{cast}")
            placeholders.append(name)
        elif field.has_default() and callable(field.default) and field.default not in (list, dict):
            raise TypeError(f"{name}'s default is made for each row: name it in per_row")
        else:
            default = field.get_db_prep_save(field.get_default(), connection)
            literal = str(ops.compose_sql("%s", [default])).replace("%", "%%")
            values.append(f"({literal})::{cast}")
    columns = ", ".join(quote(str(field.column)) for field in fields)
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "
    if not many:
        return f"{sql}VALUES ({', '.join(values)})", tuple(placeholders)
    sql += f"SELECT {', '.join(values)} FROM jsonb_array_elements(%s::jsonb) AS v"
    return sql, tuple(placeholders)


def _as_json(field: models.Field[Any, Any], values: Iterable[Any]) -> list[Any]:
    """A column's values as JSON values PostgreSQL reads back: UUIDs (objects or text) and
    datetimes as text (converted a column at a time: far cheaper than the encoder's
    ``default`` hook)."""
    if isinstance(field, models.UUIDField):
        convert: Any = str
    elif isinstance(field, models.DateTimeField):
        convert = datetime.isoformat
    else:
        return list(values)
    return [None if value is None else convert(value) for value in values]


@functools.cache
def _json_fields(model: type[TaskExecution]) -> frozenset[str]:
    fields = model._meta.concrete_fields
    return frozenset(field.attname for field in fields if isinstance(field, models.JSONField))


def _cast(field: models.Field[Any, Any], connection: Any) -> str:
    # Text, not varchar(n): a cast to varchar(n) would cut a long value short, where the
    # column's own check rejects it.
    return "text" if isinstance(field, models.CharField) else str(field.db_type(connection))


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
        (
            row.pk,
            row.attempt,
            row.claim_token,
            row.worker,
            row.ray_handle,
            row.ray_node,
            _json(v),
            _json(r),
        )
        for row, v, r in items
    )
    sql = (
        f"UPDATE \"{table}\" AS t SET state = 'SUCCESSFUL', finished_at = %s, "
        "monitor_heartbeat_at = NULL, result_data = v.result, result_reference = v.ref, "
        "ray_handle = v.handle, ray_node = COALESCE(NULLIF(v.node, ''), t.ray_node) "
        "FROM unnest(%s::uuid[], %s::integer[], %s::uuid[], %s::text[], %s::text[], "
        "%s::text[], %s::jsonb[], %s::jsonb[]) "
        "AS v(id, attempt, token, worker, handle, node, result, ref) "
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
