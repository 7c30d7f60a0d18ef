"""Where each schedule stands, for ``django_ray_status`` and the admin: one query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django_ray.conf import get_settings
from django_ray.models import Schedule
from django_ray.scheduling.entries import entries

REMOVED = "(not in SCHEDULE)"


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    name: str
    task: str
    when: str
    """``cron '...'`` or ``every N s``; :data:`REMOVED` for a row whose entry is gone."""
    last_run_at: datetime | None
    """The due time of the last run enqueued."""
    next_run_at: datetime | None
    """The next due time not yet enqueued (None before any worker with ``--schedule``
    saw the entry, or once it is removed)."""
    runs: int
    checked_at: datetime | None
    last_run_id: str | None

    def overdue(self, now: datetime, grace_seconds: float) -> bool:
        """Whether a due time went unenqueued past the lease: no worker schedules."""
        due = self.next_run_at
        return due is not None and due < now - timedelta(seconds=grace_seconds)


def schedule_statuses() -> tuple[ScheduleStatus, ...]:
    """Every entry of ``SCHEDULE`` by name, then the rows of entries since removed."""
    states = {state.name: state for state in Schedule.objects.all()}
    found = []
    for entry in entries(get_settings().schedule):
        state = states.pop(entry.name, None)
        last_due = state.last_due_at if state is not None else None
        found.append(
            ScheduleStatus(
                name=entry.name,
                task=entry.task,
                when=entry.when,
                last_run_at=state.last_run_at if state is not None else None,
                next_run_at=entry.next_after(last_due) if last_due is not None else None,
                runs=state.runs if state is not None else 0,
                checked_at=state.checked_at if state is not None else None,
                last_run_id=_text(state.last_run_id) if state is not None else None,
            )
        )
    found += [
        ScheduleStatus(
            name=state.name,
            task="-",
            when=REMOVED,
            last_run_at=state.last_run_at,
            next_run_at=None,
            runs=state.runs,
            checked_at=state.checked_at,
            last_run_id=_text(state.last_run_id),
        )
        for state in sorted(states.values(), key=lambda state: state.name)
    ]
    return tuple(found)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
