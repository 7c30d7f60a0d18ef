"""What keeps the task list cheap on a table of millions: bounded counts and bounded filters.

No query here reads the whole table. The count stops at :attr:`BoundedPaginator.bound`,
the time filter is served by the index on ``enqueued_at``, and the queue and
task filters offer the values seen in the latest rows instead of every
distinct value ever stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.functional import cached_property

from django_ray.models import TaskExecution


class BoundedPaginator(Paginator):
    """Counts at most ``bound`` rows; past that, ``truncated`` is set and paging stops there.

    A COUNT(*) of a filtered million-row table reads every matching row; this
    one stops after ``bound + 1``. The list then says "more than" the bound.
    """

    bound = 10_000
    truncated = False

    @cached_property
    def count(self) -> int:
        window = self.object_list[: self.bound + 1]
        counted = window.count() if isinstance(window, QuerySet) else len(window)
        self.truncated = counted > self.bound
        return min(counted, self.bound)


class BoundedChangeList(ChangeList):
    """Django's change list over a :class:`BoundedPaginator`."""

    def get_results(self, request: Any) -> None:
        super().get_results(request)
        if self.paginator.truncated:
            # The search box would print the bound as the number of matches; it prints none.
            self.full_result_count = self.result_count


class EnqueuedFilter(admin.SimpleListFilter):
    """Fixed windows back from now, each one range on the ``enqueued_at`` index."""

    title = "enqueued"
    parameter_name = "enqueued"
    windows = {
        "1h": ("in the last hour", timedelta(hours=1)),
        "24h": ("in the last 24 hours", timedelta(days=1)),
        "7d": ("in the last 7 days", timedelta(days=7)),
        "30d": ("in the last 30 days", timedelta(days=30)),
        "older": ("more than 30 days ago", timedelta(days=30)),
    }

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.windows.items()]

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in self.windows:
            return queryset
        since = timezone.now() - self.windows[str(self.value())][1]
        if self.value() == "older":
            return queryset.filter(enqueued_at__lt=since)
        return queryset.filter(enqueued_at__gte=since)


class RecentValuesFilter(admin.SimpleListFilter):
    """Offers the values of ``field`` among the latest ``window`` rows (one bounded query):
    listing every distinct value would read the whole table on each page."""

    field: str
    window = 1_000

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        latest = TaskExecution.objects.order_by("-enqueued_at").values_list(self.field, flat=True)
        values = set(latest[: self.window])
        if self.value():
            values.add(str(self.value()))  # chosen from an older row, or typed into the URL
        return [(value, value) for value in sorted(values)]

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(**{self.field: self.value()})
        return queryset


class QueueFilter(RecentValuesFilter):
    title = "queue (recent rows)"
    parameter_name = "queue"
    field = "queue_name"


class TaskPathFilter(RecentValuesFilter):
    title = "task (recent rows)"
    parameter_name = "task"
    field = "task_path"
