"""An operator's hand on the state tables: retry failed tasks, cancel waiting or running ones.

Each change is an UPDATE that re-checks the state it starts from, so a row
that a worker moved in the meantime is skipped, never overwritten. Rows that
came from Celery are Celery's: they are skipped, and the message says to go
through Celery (send the task again, or revoke it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from django_ray.cancel import TaskCancelled
from django_ray.lifecycle.errors import error_data
from django_ray.models import Origin, State, TaskExecution
from django_ray.operations import count_tasks
from django_ray.querysets import JSONAppend


@dataclass(frozen=True, slots=True)
class Retried:
    retried: int
    skipped: int
    from_celery: int = 0

    def __str__(self) -> str:
        text = f"Retried {count_tasks(self.retried)}"
        if self.skipped:
            text += f"; {self.skipped} skipped because {_they(self.skipped)} not FAILED"
        return text + _from_celery(self.from_celery, "send them again") + "."


@dataclass(frozen=True, slots=True)
class Cancelled:
    cancelled: int
    """READY rows now FAILED (cancelled before they ran)."""
    marked: int
    """RUNNING rows marked cancelled; stopping them on Ray is their worker's job."""
    skipped: int
    from_celery: int = 0

    def __str__(self) -> str:
        text = f"Cancelled {self.cancelled} READY {_noun(self.cancelled)}"
        if self.marked:
            text += f"; marked {self.marked} RUNNING {_noun(self.marked)} for the worker to stop"
        if self.skipped:
            they = "it" if self.skipped == 1 else "they"
            text += (
                f"; {self.skipped} skipped because {they} had already finished or been cancelled"
            )
        return text + _from_celery(self.from_celery, "revoke them") + "."


def retry_failed(rows: QuerySet[TaskExecution]) -> Retried:
    """Put the FAILED rows among ``rows`` back to READY, due now.

    The attempt count and the errors of earlier attempts are kept: the next
    claim is the next attempt, and the history stays readable.
    """
    selected = rows.count()
    from_celery = rows.filter(origin=Origin.CELERY).count()
    retried = (
        rows.filter(origin=Origin.TASKS)
        .filter(state=State.FAILED)
        .update(state=State.READY, run_after=None, cancelled_at=None, finished_at=None)
    )
    return Retried(
        retried=retried, skipped=selected - retried - from_celery, from_celery=from_celery
    )


def cancel(
    rows: QuerySet[TaskExecution], *, message: str, now: datetime | None = None
) -> Cancelled:
    """Cancel ``rows``: READY ones end FAILED with a cancellation error, RUNNING ones are marked.

    ``message`` says who cancelled and how; it is the recorded error's message.
    """
    now = now or timezone.now()
    selected = rows.count()
    from_celery = rows.filter(origin=Origin.CELERY).count()
    rows = rows.filter(origin=Origin.TASKS)
    waiting = rows.filter(state=State.READY)
    cancelled = 0
    with transaction.atomic(using=rows.db):
        # The error names the row's own attempt; JSONAppend appends one value, so
        # rows are updated per attempt number (a handful of distinct values).
        attempts = list(waiting.order_by().values_list("attempt", flat=True).distinct())
        for attempt in attempts:
            error = {**error_data(TaskCancelled, message), "attempt": attempt}
            cancelled += waiting.filter(attempt=attempt).update(
                state=State.FAILED,
                cancelled_at=now,
                finished_at=now,
                errors=JSONAppend("errors", error),
            )
        marked = rows.filter(state=State.RUNNING, cancelled_at__isnull=True).update(
            cancelled_at=now
        )
    return Cancelled(
        cancelled=cancelled,
        marked=marked,
        skipped=selected - cancelled - marked - from_celery,
        from_celery=from_celery,
    )


def _from_celery(count: int, what_to_do: str) -> str:
    if not count:
        return ""
    they = "it" if count == 1 else "they"
    return f"; {count} skipped because {they} came from Celery ({what_to_do} through Celery)"


def _they(count: int) -> str:
    return "it is" if count == 1 else "they are"


def _noun(count: int) -> str:
    return "task" if count == 1 else "tasks"
