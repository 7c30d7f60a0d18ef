"""Queries over the state tables, named after the states they select. Nothing here writes.

The rows of Celery tasks (origin ``celery``) share the table, and only the
Celery pool moves them: every selection a Django worker acts on (``claimable``,
``orphaned``) is of Django Tasks rows alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import NotSupportedError, connections
from django.db.models import F, Func, JSONField, Q, QuerySet
from django.utils import timezone

from django_ray.states import Origin, State

if TYPE_CHECKING:
    from django_ray.models import TaskExecution, WorkerLease  # noqa: F401


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

    def of_tasks(self) -> TaskExecutionQuerySet:
        """Rows enqueued through Django's Tasks API (the ones Django workers run)."""
        return self.filter(origin=Origin.TASKS)

    def of_celery(self) -> TaskExecutionQuerySet:
        """Rows of tasks the Celery pool runs (Celery owns them; Django workers never move them)."""
        return self.filter(origin=Origin.CELERY)

    def claimable(
        self, queues: Iterable[str], now: datetime, backend: str = "default"
    ) -> TaskExecutionQuerySet:
        """READY Django Tasks rows of these queues whose ``run_after`` has passed, in claim order.

        ``django_ray_claim_idx`` holds exactly the READY Django Tasks rows, in this order.
        """
        return (
            self.ready()
            .of_tasks()
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
        """RUNNING Django Tasks rows of these queues whose worker holds no live lease,
        oldest attempt first."""
        from django_ray.models import WorkerLease

        alive = WorkerLease.objects.alive().values("worker_id")
        return (
            self.running()
            .of_tasks()
            .filter(backend=backend, queue_name__in=list(queues))
            .exclude(worker__in=alive)
            .order_by("last_attempted_at")
        )

    def held_by(self, worker_id: str, ids: Iterable[str]) -> TaskExecutionQuerySet:
        """Of ``ids``, the RUNNING rows that still name ``worker_id`` as theirs."""
        return self.running().filter(pk__in=list(ids), worker=worker_id)

    @property
    def db_connection(self) -> Any:
        return connections[self.db]


class WorkerLeaseQuerySet(QuerySet["WorkerLease"]):
    def alive(self, now: datetime | None = None) -> WorkerLeaseQuerySet:
        return self.filter(lease_expires_at__gt=now or timezone.now())

    def expired(self, now: datetime | None = None) -> WorkerLeaseQuerySet:
        return self.filter(lease_expires_at__lte=now or timezone.now())
