"""Queries over the state tables, named after the states they select."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import NotSupportedError, connections, transaction
from django.db.models import F, Func, JSONField, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.tasks import TaskResultStatus
from django.utils import timezone

if TYPE_CHECKING:
    from django_ray.models import TaskExecution, WorkerLease  # noqa: F401

State = TaskResultStatus


class JSONAppend(Func):
    """``field || [item]`` for a JSON array column, in one UPDATE.

    Django has no portable JSON-append expression; claiming a batch of rows
    must append the worker id to each row without reading them first.
    """

    output_field = JSONField()

    def __init__(self, field: str, item: Any) -> None:
        super().__init__(F(field))
        self.item_json = json.dumps(item)

    def as_sql(self, compiler: Any, connection: Any, *args: Any, **extra: Any) -> Any:
        raise NotSupportedError(
            f"django-ray supports PostgreSQL and SQLite, not {connection.vendor}."
        )

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return (
            f"(COALESCE({sql}, '[]'::jsonb) || jsonb_build_array(%s::jsonb))",
            (*params, self.item_json),
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return f"json_insert(COALESCE({sql}, '[]'), '$[#]', json(%s))", (*params, self.item_json)


class TaskExecutionQuerySet(QuerySet["TaskExecution"]):
    def ready(self) -> TaskExecutionQuerySet:
        return self.filter(state=State.READY)

    def running(self) -> TaskExecutionQuerySet:
        return self.filter(state=State.RUNNING)

    def finished(self) -> TaskExecutionQuerySet:
        return self.filter(state__in=[State.SUCCESSFUL, State.FAILED])

    def claimable(
        self, queues: Iterable[str], now: datetime, backend: str = "default"
    ) -> TaskExecutionQuerySet:
        """READY rows of these queues whose ``run_after`` has passed, in claim order."""
        return (
            self.ready()
            .filter(backend=backend, queue_name__in=list(queues))
            .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
            .order_by("-priority", "enqueued_at", "id")
        )

    def owned_by(
        self, pk: Any, attempt: int, claim_token: uuid.UUID | str | None
    ) -> TaskExecutionQuerySet:
        """The row, only while this attempt still owns it (the fence for every outcome)."""
        return self.filter(pk=pk, attempt=attempt, claim_token=claim_token, state=State.RUNNING)

    def orphaned(self, queues: Iterable[str], backend: str = "default") -> TaskExecutionQuerySet:
        """RUNNING rows of these queues whose worker holds no live lease, oldest attempt first."""
        from django_ray.models import WorkerLease

        alive = WorkerLease.objects.alive().values("worker_id")
        return (
            self.running()
            .filter(backend=backend, queue_name__in=list(queues))
            .exclude(worker__in=alive)
            .order_by("last_attempted_at")
        )

    def claim(
        self,
        limit: int,
        *,
        worker_id: str,
        queues: Iterable[str],
        runner: str,
        backend: str = "default",
    ) -> list[TaskExecution]:
        """Move up to ``limit`` claimable rows to RUNNING for this worker and return them.

        On PostgreSQL this is one statement: concurrent workers skip each
        other's locked rows, and the rows come back from ``RETURNING``. On
        SQLite writers are serialized. Either way the UPDATE re-checks the
        READY state and stamps a fresh claim token, and only rows carrying
        that token are returned, so no row is ever claimed twice.
        """
        if limit <= 0:
            return []
        now = timezone.now()
        token = uuid.uuid4()
        if self.db_connection.vendor == "postgresql":
            rows = self._claim_in_one_statement(
                limit, now=now, token=token, worker_id=worker_id, queues=list(queues),
                runner=runner, backend=backend,
            )  # fmt: skip
            return sorted(rows, key=lambda row: (-row.priority, row.enqueued_at, str(row.pk)))
        with transaction.atomic(using=self.db):
            ids = list(
                self.claimable(queues, now, backend)
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:limit]
            )
            if not ids:
                return []
            self.filter(pk__in=ids, state=State.READY).update(
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
        return list(
            self.filter(pk__in=ids, claim_token=token).order_by("-priority", "enqueued_at", "id")
        )

    def _claim_in_one_statement(
        self,
        limit: int,
        *,
        now: datetime,
        token: uuid.UUID,
        worker_id: str,
        queues: list[str],
        runner: str,
        backend: str,
    ) -> list[TaskExecution]:
        """PostgreSQL: lock, update and return the rows in one round trip, in autocommit.

        The rows are ``claimable()``'s, compiled by Django and locked ``FOR UPDATE
        SKIP LOCKED`` in a CTE, which is evaluated once (it has side effects, so it
        is never inlined) and walks ``django_ray_claim_idx`` in claim order; the
        UPDATE re-checks READY on the locked rows.
        """
        table = self.model._meta.db_table
        columns = ", ".join(f't."{field.column}"' for field in self.model._meta.concrete_fields)
        picked = self.claimable(queues, now, backend).values("pk")[:limit]
        picked_sql, picked_params = picked.query.sql_with_params()
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
        return list(self.model.objects.db_manager(self.db).raw(sql, params))

    def record_successes(
        self, items: list[tuple[TaskExecution, Any, Any]], now: datetime
    ) -> set[str]:
        """Record (row, value, reference) successes, each fenced as in ``owned_by`` and by
        its worker; returns the ids recorded. One statement on PostgreSQL, whatever the count.
        """
        if not items:
            return set()
        if self.db_connection.vendor != "postgresql":
            return {
                str(row.pk)
                for row, value, reference in items
                if row.record_success(value=value, reference=reference, finished_at=now)
            }
        table = self.model._meta.db_table
        # One array per column: the statement has the same few placeholders
        # whatever the batch size, so building it costs nothing per row.
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
        with self.db_connection.cursor() as cursor:
            cursor.execute(sql, [now, *columns])
            return {str(pk) for (pk,) in cursor.fetchall()}

    def set_ray_handles(self, rows: list[TaskExecution]) -> None:
        """Store each row's ``ray_handle`` while its attempt owns it; one statement on
        PostgreSQL."""
        if not rows:
            return
        if self.db_connection.vendor != "postgresql":
            for row in rows:
                self.owned_by(row.pk, row.attempt, row.claim_token).update(
                    ray_handle=row.ray_handle
                )
            return
        table = self.model._meta.db_table
        columns = _columns((row.pk, row.attempt, row.claim_token, row.ray_handle) for row in rows)
        with self.db_connection.cursor() as cursor:
            cursor.execute(
                f'UPDATE "{table}" AS t SET ray_handle = v.handle '
                "FROM unnest(%s::uuid[], %s::integer[], %s::uuid[], %s::text[]) "
                "AS v(id, attempt, token, handle) WHERE t.id = v.id AND t.attempt = v.attempt "
                "AND t.claim_token = v.token AND t.state = 'RUNNING'",
                columns,
            )

    @property
    def db_connection(self) -> Any:
        return connections[self.db]


def _columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows of values as one list per column (the arrays ``unnest()`` takes)."""
    return [list(column) for column in zip(*rows, strict=True)]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


class WorkerLeaseQuerySet(QuerySet["WorkerLease"]):
    def alive(self, now: datetime | None = None) -> WorkerLeaseQuerySet:
        return self.filter(lease_expires_at__gt=now or timezone.now())

    def expired(self, now: datetime | None = None) -> WorkerLeaseQuerySet:
        return self.filter(lease_expires_at__lte=now or timezone.now())
