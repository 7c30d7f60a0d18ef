"""The Django admin for the state tables: every task with its attempts and Ray links, every worker.

Rows are read-only here: a task changes state only through the ``retry`` and
``cancel`` actions, each behind its own permission. Every list column is
computed from the row itself (or one annotated subquery), so a page costs
the same number of queries whatever the size of the table.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from django_ray.lifecycle import operator
from django_ray.models import Runner, State, TaskExecution, WorkerLease

DASHBOARD_URL_ENV = "RAY_DASHBOARD_URL"
"""Environment variable with the Ray dashboard's base URL (a ``RAY_DASHBOARD_URL`` setting wins)."""

# A Ray task id is 24 bytes whose last 4 are its job's id; the dashboard's
# task page sits under that job.
_RAY_TASK_ID = re.compile(r"[0-9a-f]{40}(?P<job>[0-9a-f]{8})")


def ray_dashboard_url(row: TaskExecution) -> str | None:
    """The Ray dashboard page of the row's latest attempt, or None without a URL or handle.

    ``ray_job`` rows link to the job page, ``ray_core`` rows to the task page
    (``#/jobs/<job id>/tasks/<task id>``, the route of the Ray 2.60 dashboard).
    """
    base = getattr(settings, "RAY_DASHBOARD_URL", None) or os.environ.get(DASHBOARD_URL_ENV)
    if not base or not row.ray_handle:
        return None
    base, handle = base.rstrip("/"), quote(row.ray_handle, safe="")
    if row.runner == Runner.RAY_JOB:
        return f"{base}/#/jobs/{handle}"
    task_id = _RAY_TASK_ID.fullmatch(handle)
    if row.runner == Runner.RAY_CORE and task_id:
        return f"{base}/#/jobs/{task_id['job']}/tasks/{handle}"
    return None


def execution_time(row: TaskExecution, now: datetime) -> timedelta | None:
    """From the first start to the end (or to ``now`` while RUNNING); None before it started."""
    if row.started_at is None:
        return None
    end = row.finished_at or (now if row.state == State.RUNNING else None)
    return None if end is None else end - row.started_at


def format_duration(elapsed: timedelta | None) -> str:
    if elapsed is None:
        return "-"
    seconds = elapsed.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _pretty_json(value: Any) -> SafeString:
    return format_html(
        "<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    )


# The detail page, read-only; the names that are not columns are methods below.
_TASK_FIELDS = (
    "id",
    "task_path",
    "state",
    "queue_name",
    "priority",
    "backend",
    "origin",
    "celery_task_id",
)
_ARGUMENT_FIELDS = ("arguments", "keyword_arguments", "task_options")
_EXECUTION_FIELDS = (
    "attempt",
    "lost_attempts",
    "worker",
    "worker_ids",
    "runner",
    "ray_handle",
    "ray_status",
    "ray_dashboard",
    "monitor_heartbeat_at",
    "cancelled_at",
)
_TIME_FIELDS = (
    "enqueued_at",
    "run_after",
    "started_at",
    "last_attempted_at",
    "finished_at",
    "duration",
)
_OUTCOME_FIELDS = ("result", "errors_by_attempt")


@admin.register(TaskExecution)
class TaskExecutionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "state",
        "task_path",
        "queue_name",
        "priority",
        "attempt",
        "worker",
        "runner",
        "origin",
        "enqueued_at",
        "started_at",
        "finished_at",
        "duration",
    )
    list_filter = ("state", "queue_name", "origin", "task_path")
    # id__exact skips terms that are not UUIDs instead of failing the search.
    search_fields = ("id__exact", "task_path", "celery_task_id__exact")
    show_full_result_count = False
    actions = ("retry", "cancel")
    fieldsets = (
        (None, {"fields": _TASK_FIELDS}),
        ("Arguments", {"fields": _ARGUMENT_FIELDS}),
        ("Execution", {"fields": _EXECUTION_FIELDS}),
        ("Times", {"fields": _TIME_FIELDS}),
        ("Outcome", {"fields": _OUTCOME_FIELDS}),
    )
    readonly_fields = (
        _TASK_FIELDS + _ARGUMENT_FIELDS + _EXECUTION_FIELDS + _TIME_FIELDS + _OUTCOME_FIELDS
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # rows change state only through the actions

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_ray.retry_taskexecution")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_ray.cancel_taskexecution")

    @admin.action(description="Retry selected FAILED tasks", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskExecution]) -> None:
        outcome = operator.retry_failed(queryset)
        self.message_user(request, str(outcome), _level(outcome.retried))

    @admin.action(description="Cancel selected READY or RUNNING tasks", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[TaskExecution]) -> None:
        by = request.user.get_username()
        outcome = operator.cancel(queryset, message=f"Cancelled from the admin by {by}")
        self.message_user(request, str(outcome), _level(outcome.cancelled + outcome.marked))

    @admin.display(description="duration")
    def duration(self, row: TaskExecution) -> str:
        return format_duration(execution_time(row, timezone.now()))

    @admin.display(description="args")
    def arguments(self, row: TaskExecution) -> SafeString:
        return _pretty_json(row.args)

    @admin.display(description="kwargs")
    def keyword_arguments(self, row: TaskExecution) -> SafeString:
        return _pretty_json(row.kwargs)

    @admin.display(description="options")
    def task_options(self, row: TaskExecution) -> SafeString:
        return _pretty_json(row.options)

    @admin.display(description="Ray dashboard")
    def ray_dashboard(self, row: TaskExecution) -> str:
        url = ray_dashboard_url(row)
        if url is None:
            return "-"
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)

    @admin.display(description="result")
    def result(self, row: TaskExecution) -> str:
        if row.result_reference is not None:
            return format_html("Stored outside the row:{}", _pretty_json(row.result_reference))
        if row.state == State.SUCCESSFUL:
            return _pretty_json(row.result_data)
        return "-"

    @admin.display(description="errors")
    def errors_by_attempt(self, row: TaskExecution) -> str:
        if not row.errors:
            return "-"
        return format_html_join(
            "",
            "<p><strong>Attempt {}</strong> on {}: <code>{}</code>: {}</p><pre>{}</pre>",
            (
                (
                    error.get("attempt", "?"),
                    error.get("worker") or "-",
                    error.get("exception_class_path", ""),
                    error.get("message", ""),
                    error.get("traceback") or "(no traceback)",
                )
                for error in row.errors
            ),
        )


def _level(changed: int) -> int:
    return messages.SUCCESS if changed else messages.WARNING


class LivenessFilter(admin.SimpleListFilter):
    title = "liveness"
    parameter_name = "liveness"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("alive", "alive"), ("expired", "expired")]

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "alive":
            return queryset.filter(lease_expires_at__gt=timezone.now())
        if self.value() == "expired":
            return queryset.filter(lease_expires_at__lte=timezone.now())
        return queryset


@admin.register(WorkerLease)
class WorkerLeaseAdmin(admin.ModelAdmin):
    list_display = (
        "worker_id",
        "hostname",
        "pid",
        "liveness",
        "queue_names",
        "runner",
        "concurrency",
        "in_flight",
        "heartbeat_at",
        "stopping",
    )
    list_filter = (LivenessFilter, "runner", "stopping")
    show_full_result_count = False
    search_fields = ("worker_id", "hostname")
    fields = (
        "worker_id",
        "hostname",
        "pid",
        "liveness",
        "queue_names",
        "runner",
        "concurrency",
        "in_flight",
        "ray_address",
        "started_at",
        "heartbeat_at",
        "lease_expires_at",
        "stopping",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkerLease]:
        running = (
            TaskExecution.objects.running()
            .filter(worker=OuterRef("worker_id"))
            .order_by()
            .values("worker")
            .annotate(count=Count("pk"))
            .values("count")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(in_flight=Coalesce(Subquery(running, output_field=IntegerField()), 0))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A live worker whose lease row vanished would look dead to the others,
        # which would then recover its RUNNING tasks under it.
        return False

    @admin.display(description="liveness", ordering="lease_expires_at")
    def liveness(self, lease: WorkerLease) -> str:
        return "alive" if lease.lease_expires_at > timezone.now() else "expired"

    @admin.display(description="queues")
    def queue_names(self, lease: WorkerLease) -> str:
        return ", ".join(lease.queues)

    @admin.display(description="in flight", ordering="in_flight")
    def in_flight(self, lease: WorkerLease) -> int:
        return int(getattr(lease, "in_flight", 0))
