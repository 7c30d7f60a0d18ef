"""Deleting old finished executions, and their stored payloads first, in bounded batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.tasks import TaskResultStatus
from django.utils import timezone

from django_ray.results.codec import delete_result

if TYPE_CHECKING:
    from django_ray.conf import RaySettings
    from django_ray.querysets import TaskExecutionQuerySet

FINISHED_STATES = (TaskResultStatus.SUCCESSFUL.value, TaskResultStatus.FAILED.value)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """How many rows and stored payloads were deleted (or would be, on a dry run)."""

    executions: int
    payloads: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Purge:
    """Finished executions in ``states`` whose ``finished_at`` is before ``cutoff``."""

    cutoff: datetime
    states: Sequence[str] = FINISHED_STATES
    batch_size: int = 500

    def __post_init__(self) -> None:
        unfinished = sorted(set(self.states) - set(FINISHED_STATES))
        if unfinished or not self.states:
            raise ValueError(f"Only finished states can be purged; got {list(self.states)}.")
        if self.batch_size < 1:
            raise ValueError(f"The batch size must be at least 1; got {self.batch_size}.")

    def expired(self) -> TaskExecutionQuerySet:
        from django_ray.models import TaskExecution

        return TaskExecution.objects.filter(state__in=self.states, finished_at__lt=self.cutoff)

    def count(self) -> PurgeReport:
        """What :meth:`run` would delete now, deleting nothing."""
        expired = self.expired()
        stored = expired.filter(result_reference__isnull=False).exclude(
            result_reference__backend="digest"
        )
        return PurgeReport(expired.count(), stored.count())

    def run(self, settings: RaySettings) -> PurgeReport:
        """Delete batch after batch: each batch's payloads, then its rows in one DELETE.

        A payload that cannot be deleted stops the purge before its row goes: a
        payload is never left behind without the row that points to it.
        """
        executions = payloads = 0
        expired = self.expired()
        while batch := self._next_batch(expired):
            for pk, reference in batch:
                if reference is not None:
                    payloads += delete_result(reference, execution_id=str(pk), settings=settings)
            deleted, _ = expired.filter(pk__in=[pk for pk, _ in batch]).delete()
            executions += deleted
            if deleted == 0:  # every row of the batch changed meanwhile: stop, do not spin
                break
        return PurgeReport(executions, payloads)

    def _next_batch(self, expired: TaskExecutionQuerySet) -> list[tuple[Any, Any]]:
        rows = expired.order_by("finished_at", "pk").values_list("pk", "result_reference")
        return list(rows[: self.batch_size])


def cutoff_days_ago(days: int) -> datetime:
    """The moment ``days`` days before now: rows finished before it are old enough to purge."""
    return timezone.now() - timedelta(days=days)
