"""The admin of ``DJANGO_RAY["SCHEDULE"]``: every entry, its last run and its next due time."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from django_ray.admin.display import moment_html
from django_ray.conf import get_settings
from django_ray.models import Schedule
from django_ray.scheduling.entries import Entry, entries
from django_ray.scheduling.status import REMOVED


def _entry(state: Schedule) -> Entry | None:
    return next((e for e in entries(get_settings().schedule) if e.name == state.name), None)


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "task", "when", "last_run", "next_run", "runs", "checked")
    fields = list_display
    readonly_fields = list_display
    show_full_result_count = False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # An entry no worker with --schedule has seen yet has no row: show it all the same.
        # A row with no last due time is what the schedulers treat as new, so this
        # changes nothing for them.
        names = [entry.name for entry in entries(get_settings().schedule)]
        Schedule.objects.bulk_create([Schedule(name=n) for n in names], ignore_conflicts=True)
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # entries live in settings

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the schedulers move them on

    @admin.display(description="task")
    def task(self, state: Schedule) -> str:
        entry = _entry(state)
        return entry.task if entry is not None else "-"

    @admin.display(description="when")
    def when(self, state: Schedule) -> str:
        entry = _entry(state)
        return entry.when if entry is not None else REMOVED

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, state: Schedule) -> Any:
        if state.last_run_id is None:
            return "-"
        url = reverse("admin:django_ray_taskexecution_change", args=[state.last_run_id])
        return format_html('<a href="{}">{}</a>', url, moment_html(state.last_run_at, _now()))

    @admin.display(description="next run")
    def next_run(self, state: Schedule) -> Any:
        entry = _entry(state)
        if entry is None:
            return "-"
        if state.last_due_at is None:
            return "once a worker with --schedule sees it"
        return moment_html(entry.next_after(state.last_due_at), _now())

    @admin.display(description="last checked", ordering="checked_at")
    def checked(self, state: Schedule) -> Any:
        return moment_html(state.checked_at, _now())


def _now() -> Any:
    return timezone.now()
