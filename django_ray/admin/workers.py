"""The admin of worker leases: every worker, whether it is alive, and what it runs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from django_ray.models import TaskExecution, WorkerLease


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
