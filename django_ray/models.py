"""State tables: one row per task execution, one row per running worker.

The database is the system of record. Every state change is one UPDATE, fenced
by the attempt number and the claim token of the attempt that owns the row, so
a late or duplicate completion can never overwrite a newer state.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import F, Q
from django.tasks import TaskResultStatus
from django.utils import timezone

from django_ray.querysets import JSONAppend, TaskExecutionQuerySet, WorkerLeaseQuerySet

State = TaskResultStatus


class Origin(models.TextChoices):
    TASKS = "tasks", "Django Tasks"
    CELERY = "celery", "Celery"


class Runner(models.TextChoices):
    RAY_CORE = "ray_core", "Ray Core"
    RAY_JOB = "ray_job", "Ray Job"


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

    state = models.CharField(max_length=10, choices=State.choices, default=State.READY)
    attempt = models.PositiveIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=64, blank=True, default="")
    worker_ids = models.JSONField(default=list)
    runner = models.CharField(max_length=10, choices=Runner.choices, blank=True, default="")
    ray_handle = models.CharField(max_length=128, blank=True, default="")
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

    objects = TaskExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-enqueued_at"]
        indexes = [
            # Serves the claim query exactly: only READY rows are in it, in the
            # order the claim takes them, so claiming costs the same whatever
            # the size of the finished history.
            models.Index(
                F("priority").desc(),
                "enqueued_at",
                "id",
                name="django_ray_claim_idx",
                condition=Q(state="READY"),
            ),
            models.Index("worker", name="django_ray_running_idx", condition=Q(state="RUNNING")),
            models.Index("task_path", "state", name="django_ray_task_state_idx"),
            models.Index("queue_name", "state", name="django_ray_queue_state_idx"),
            models.Index(F("enqueued_at").desc(), name="django_ray_enqueued_idx"),
        ]
        permissions = [
            ("retry_taskexecution", "Can retry failed task executions"),
            ("cancel_taskexecution", "Can cancel task executions"),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} [{self.id}] {self.state}"

    def record_success(
        self, *, value: Any, finished_at: datetime, reference: dict[str, Any] | None = None
    ) -> bool:
        """Record this attempt's return value (inline, or the pointer to where it is stored);
        False if the attempt no longer owns the row."""
        return self._finish(
            State.SUCCESSFUL, finished_at, result_data=value, result_reference=reference
        )

    def record_failure(
        self, *, error: dict[str, Any], finished_at: datetime, lost: bool = False
    ) -> bool:
        """Record this attempt's error as final; False if the attempt no longer owns the row."""
        return self._finish(State.FAILED, finished_at, **self._error_fields(error, lost))

    def record_retry(
        self, *, error: dict[str, Any], run_after: datetime, lost: bool = False
    ) -> bool:
        """Record this attempt's error and put the row back in the queue for ``run_after``."""
        return self._update_owned(
            state=State.READY,
            run_after=run_after,
            claim_token=None,
            worker="",
            ray_status="",
            **self._error_fields(error, lost),
        )

    def _error_fields(self, error: dict[str, Any], lost: bool) -> dict[str, Any]:
        entry = {**error, "attempt": self.attempt, "worker": self.worker}
        fields: dict[str, Any] = {"errors": JSONAppend("errors", entry)}
        if lost:
            fields["lost_attempts"] = F("lost_attempts") + 1
        return fields

    def _finish(self, state: str, finished_at: datetime, **fields: Any) -> bool:
        return self._update_owned(state=state, finished_at=finished_at, **fields)

    def hand_back(self) -> bool:
        """Put this attempt's row back in the queue, due now (a worker stopping; not a failure)."""
        return self._update_owned(
            state=State.READY, run_after=None, claim_token=None, worker="", ray_status=""
        )

    def adopt(self, worker_id: str, now: datetime) -> bool:
        """Take over monitoring this attempt from a worker whose lease expired."""
        if not self._update_owned(worker=worker_id, monitor_heartbeat_at=now):
            return False
        self.worker, self.monitor_heartbeat_at = worker_id, now
        return True

    def _update_owned(self, **fields: Any) -> bool:
        """One UPDATE, only while this attempt (and the worker it knows) still owns the row.

        Comparing the worker too means a worker whose lease lapsed and whose
        attempt was adopted by another can no longer write over it.
        """
        fields.setdefault("monitor_heartbeat_at", None)
        if self.ray_handle:  # the worker may not have written it yet (see the worker loop)
            fields.setdefault("ray_handle", self.ray_handle)
        owned = TaskExecution.objects.owned_by(self.pk, self.attempt, self.claim_token).filter(
            worker=self.worker
        )
        return owned.update(**fields) == 1


class WorkerLease(models.Model):
    """A running worker process: its identity, what it serves and how long it is trusted."""

    worker_id = models.CharField(max_length=64, primary_key=True)
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
