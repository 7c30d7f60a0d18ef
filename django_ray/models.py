"""State tables: one row per task execution, one row per running worker.

The database is the system of record. The rows change state only through
:mod:`django_ray.lifecycle`, where every change is one UPDATE fenced by the
attempt number and the claim token of the attempt that owns the row.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import F, Q
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TASK_REFRESH_ATTRS, TaskError
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

from django_ray.querysets import TaskExecutionQuerySet, WorkerLeaseQuerySet
from django_ray.states import OUTLIVE_THEIR_WORKER, Origin, Runner, State

if TYPE_CHECKING:
    from django.tasks import Task

__all__ = [
    "Origin",
    "RayTaskResult",
    "Runner",
    "Schedule",
    "State",
    "TaskExecution",
    "WorkerLease",
]


class TaskExecution(models.Model):
    """A task enqueued through Django's Tasks API (or Celery), and its fate."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    backend = models.CharField(max_length=100, default="default")
    task_path = models.CharField(max_length=255)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    queue_name = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=0)
    run_after = models.DateTimeField(null=True, blank=True)
    takes_context = models.BooleanField(default=False)
    # Per-task options fixed at enqueue time (Ray resources, runtime_env,
    # retry overrides), so a worker runs the attempt as it was asked for.
    options = models.JSONField(default=dict, blank=True)
    # enqueue()'s signature over what the row may run (see django_ray.signing):
    # a row written any other way is failed before anything it names is imported.
    signature = models.CharField(max_length=100, blank=True, default="")

    state = models.CharField(max_length=10, choices=State.choices, default=State.READY)
    attempt = models.PositiveIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=64, blank=True, default="")
    worker_ids = models.JSONField(default=list)
    runner = models.CharField(max_length=10, choices=Runner.choices, blank=True, default="")
    ray_handle = models.CharField(max_length=128, blank=True, default="")
    # The Ray node the last attempt that reported ran on (hex node id; "" unknown).
    ray_node = models.CharField(max_length=64, blank=True, default="")
    # What Ray last said about the attempt (e.g. PENDING while it waits for
    # resources), as seen by the worker monitoring it.
    ray_status = models.CharField(max_length=32, blank=True, default="")
    monitor_heartbeat_at = models.DateTimeField(null=True, blank=True)
    lost_attempts = models.PositiveIntegerField(default=0)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    result_data = models.JSONField(null=True, blank=True)
    result_reference = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list)

    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.TASKS)
    celery_task_id = models.CharField(max_length=255, blank=True, default="")

    # A run of DJANGO_RAY["SCHEDULE"]: the entry's name and the time it was due for.
    schedule_name = models.CharField(max_length=200, blank=True, default="")
    scheduled_for = models.DateTimeField(null=True, blank=True)

    objects = TaskExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-enqueued_at"]
        indexes = [
            # Serves the claim query exactly: only READY Django Tasks rows are in
            # it, in the order the claim takes them, so claiming costs the same
            # whatever the size of the finished history.
            models.Index(
                F("priority").desc(),
                "enqueued_at",
                "id",
                name="django_ray_claim_idx",
                condition=Q(state="READY", origin="tasks"),
            ),
            models.Index("worker", name="django_ray_running_idx", condition=Q(state="RUNNING")),
            models.Index("task_path", "state", name="django_ray_task_state_idx"),
            models.Index("queue_name", "state", name="django_ray_queue_state_idx"),
            models.Index(F("enqueued_at").desc(), name="django_ray_enqueued_idx"),
        ]
        constraints = [
            # However many workers enqueue a schedule's runs, each due time runs once.
            models.UniqueConstraint(
                "schedule_name",
                "scheduled_for",
                name="django_ray_one_run_per_due_time",
                condition=Q(scheduled_for__isnull=False),
            ),
        ]
        permissions = [
            ("retry_taskexecution", "Can retry failed task executions"),
            ("cancel_taskexecution", "Can cancel task executions"),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} [{self.id}] {self.state}"

    @property
    def outlives_its_worker(self) -> bool:
        """Whether this attempt goes on when its worker dies (a Ray Job does; a Ray Core task
        dies with the process that owns it)."""
        return self.runner in OUTLIVE_THEIR_WORKER

    def to_task_result(self, task: Task) -> RayTaskResult:
        """Django's view of this row: status, timestamps, errors per attempt, and the value."""
        stored = (self.priority, self.queue_name, self.run_after, self.backend)
        if stored != (task.priority, task.queue_name, task.run_after, task.backend):
            # The queue or backend may have been removed from settings since the
            # row was written; the stored result is still worth showing.
            with contextlib.suppress(InvalidTask):
                task = task.using(
                    priority=self.priority,
                    queue_name=self.queue_name,
                    run_after=self.run_after,
                    backend=self.backend,
                )
        result = RayTaskResult(
            task=task,
            id=str(self.pk),
            status=TaskResultStatus(self.state),
            enqueued_at=self.enqueued_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            last_attempted_at=self.last_attempted_at,
            args=self.args,
            kwargs=self.kwargs,
            backend=self.backend,
            errors=[
                TaskError(
                    exception_class_path=error["exception_class_path"],
                    traceback=error["traceback"],
                )
                for error in self.errors
            ],
            worker_ids=list(self.worker_ids),
            result_reference=self.result_reference,
        )
        if self.state == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", self.result_data)
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class RayTaskResult(TaskResult):  # type: ignore[misc]  # the stubs miss that TaskResult is frozen
    """Django's ``TaskResult``; a value stored outside the row loads when first read.

    ``return_value`` of a result kept only as a digest raises an error that
    says so; a stored payload that is missing or corrupted raises an error
    naming the execution and the location, never returns a wrong value.
    """

    result_reference: dict[str, Any] | None = None
    _loaded: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        """Nothing to do: Django's copies ``args`` and ``kwargs`` as plain JSON, and ours are
        plain JSON already (checked by ``enqueue()``, or read back from the database)."""

    @property
    def return_value(self) -> Any:
        if (
            self.status == TaskResultStatus.SUCCESSFUL
            and self.result_reference is not None
            and not self._loaded
        ):
            from django_ray.conf import get_settings
            from django_ray.results import load_result

            value = load_result(
                self.result_reference, execution_id=self.id, settings=get_settings()
            )
            object.__setattr__(self, "_return_value", value)
            object.__setattr__(self, "_loaded", True)
        return TaskResult.return_value.fget(self)  # type: ignore[attr-defined]

    def refresh(self) -> None:
        self._copy_from(self.task.get_backend().get_result(self.id))

    async def arefresh(self) -> None:
        self._copy_from(await self.task.get_backend().aget_result(self.id))

    def _copy_from(self, fresh: Any) -> None:
        for attr in (*TASK_REFRESH_ATTRS, "result_reference", "_loaded"):
            object.__setattr__(self, attr, getattr(fresh, attr))


class WorkerLease(models.Model):
    """A running worker process: its identity, what it serves and how long it is trusted."""

    worker_id = models.CharField(max_length=64, primary_key=True)
    # A Django worker (tasks) or a Celery worker running the django_ray pool (celery).
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.TASKS)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    runner = models.CharField(max_length=10, choices=Runner.choices)
    concurrency = models.PositiveIntegerField()
    ray_address = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    lease_expires_at = models.DateTimeField()
    stopping = models.BooleanField(default=False)

    objects = WorkerLeaseQuerySet.as_manager()

    class Meta:
        ordering = ["-heartbeat_at"]

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.hostname}:{self.pid})"


class Schedule(models.Model):
    """Where one entry of ``DJANGO_RAY["SCHEDULE"]`` stands: its last due time and check.

    The workers started with ``--schedule`` share it: each locks the row, enqueues the
    runs that came due since ``last_due_at`` and moves it on.
    """

    name = models.CharField(max_length=200, primary_key=True)
    # The latest due time dealt with: enqueued, or skipped by the catch-up rule.
    last_due_at = models.DateTimeField(null=True, blank=True)
    # When a worker last looked at this entry; a longer gap than WORKER_LEASE_SECONDS
    # means no scheduler was alive, and the catch-up rule applies to what came due.
    checked_at = models.DateTimeField(null=True, blank=True)
    # The last run enqueued: its due time and its execution (not a foreign key:
    # purging old executions must not have to touch this table).
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_id = models.UUIDField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
