"""The admin of task executions: a cheap list, a read-only page with the attempt history,
and the retry and cancel actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from django_ray.admin.changelist import (
    BoundedChangeList,
    BoundedPaginator,
    EnqueuedFilter,
    QueueFilter,
    TaskPathFilter,
)
from django_ray.admin.dashboard import ray_dashboard_url
from django_ray.admin.display import (
    execution_time,
    format_duration,
    moment_html,
    pretty_json,
    result_preview,
    turnaround,
)
from django_ray.admin.history import attempt_history
from django_ray.lifecycle import operator
from django_ray.models import State, TaskExecution

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
    "runner",
    "ray_node",
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
    "run_time",
)
_OUTCOME_FIELDS = ("result",)

_STATE_COLOURS = {
    State.READY: "#417690",
    State.RUNNING: "#8a5a00",
    State.FAILED: "#ba2121",
    State.SUCCESSFUL: "#2c7a33",
}


@admin.register(TaskExecution)
class TaskExecutionAdmin(admin.ModelAdmin):
    list_display = (
        "task",
        "status",
        "queue",
        "attempt",
        "worker",
        "enqueued",
        "started",
        "finished",
        "duration",
    )
    list_display_links = ("task",)
    # Only the times sort: state, queue or task orders would sort the whole table.
    sortable_by = ("enqueued", "started", "finished")
    list_filter = ("state", EnqueuedFilter, QueueFilter, "origin", TaskPathFilter)
    # id__exact skips terms that are not UUIDs instead of failing the search.
    search_fields = ("id__exact", "task_path", "celery_task_id__exact")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice, over the whole table
    paginator = BoundedPaginator
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

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[BoundedChangeList]:
        return BoundedChangeList

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: TaskExecution | None = None,
    ) -> HttpResponse:
        if obj is not None:  # the history table under the fields (change_form.html)
            context["attempts"] = attempt_history(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description="Retry selected FAILED tasks", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskExecution]) -> None:
        outcome = operator.retry_failed(queryset)
        self.message_user(request, str(outcome), _level(outcome.retried))

    @admin.action(description="Cancel selected READY or RUNNING tasks", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[TaskExecution]) -> None:
        by = request.user.get_username()
        outcome = operator.cancel(queryset, message=f"Cancelled from the admin by {by}")
        self.message_user(request, str(outcome), _level(outcome.cancelled + outcome.marked))

    @admin.display(description="task")
    def task(self, row: TaskExecution) -> SafeString:
        # The function and its module's last part: the full path wraps in a narrow column.
        short = ".".join(row.task_path.rsplit(".", 2)[-2:])
        return format_html('<span title="{}">{}</span>', row.task_path, short)

    @admin.display(description="state")
    def status(self, row: TaskExecution) -> SafeString:
        label = row.state
        if row.state == State.RUNNING and row.cancelled_at is not None:
            label = f"{row.state} (cancel requested)"
        colour = _STATE_COLOURS.get(State(row.state), "inherit")
        return format_html('<strong style="color: {}">{}</strong>', colour, label)

    @admin.display(description="queue", ordering="queue_name")
    def queue(self, row: TaskExecution) -> str:
        return row.queue_name

    @admin.display(description="enqueued", ordering="enqueued_at")
    def enqueued(self, row: TaskExecution) -> SafeString | str:
        return moment_html(row.enqueued_at, timezone.now())

    @admin.display(description="started", ordering="started_at")
    def started(self, row: TaskExecution) -> SafeString | str:
        return moment_html(row.started_at, timezone.now())

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, row: TaskExecution) -> SafeString | str:
        return moment_html(row.finished_at, timezone.now())

    @admin.display(description="duration")
    def duration(self, row: TaskExecution) -> str:
        """Enqueued to finished, or to now while the task has not finished."""
        return format_duration(turnaround(row, timezone.now()))

    @admin.display(description="run time")
    def run_time(self, row: TaskExecution) -> str:
        return format_duration(execution_time(row, timezone.now()))

    @admin.display(description="args")
    def arguments(self, row: TaskExecution) -> SafeString:
        return pretty_json(row.args)

    @admin.display(description="kwargs")
    def keyword_arguments(self, row: TaskExecution) -> SafeString:
        return pretty_json(row.kwargs)

    @admin.display(description="options")
    def task_options(self, row: TaskExecution) -> SafeString:
        return pretty_json(row.options)

    @admin.display(description="Ray dashboard")
    def ray_dashboard(self, row: TaskExecution) -> str:
        url = ray_dashboard_url(row.ray_handle, row.runner)
        if url is None:
            return "-"
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)

    @admin.display(description="result")
    def result(self, row: TaskExecution) -> SafeString | str:
        return result_preview(row)


def _level(changed: int) -> int:
    return messages.SUCCESS if changed else messages.WARNING
