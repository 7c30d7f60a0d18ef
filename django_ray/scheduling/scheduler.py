"""Enqueueing the runs of ``DJANGO_RAY["SCHEDULE"]`` as they come due: ``--schedule``.

Every worker started with ``--schedule`` runs a :class:`Scheduler` thread. However many
there are, each due time of an entry is enqueued once:

- a worker locks the entry's :class:`~django_ray.models.Schedule` row, enqueues the runs
  due since its ``last_due_at`` and moves it on, in one transaction;
- each run's row carries the entry's name and its due time, unique together in the
  database, so even two writers that raced past the lock could not enqueue one twice.

A due time that passed while a scheduler was alive is always enqueued, however late the
check (a slow machine, a database outage). A gap with no scheduler at all (no check for
longer than ``WORKER_LEASE_SECONDS``) is caught up by the entry's ``catch_up`` rule: by
default one run for the whole gap, at its latest due time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.tasks.signals import task_enqueued
from django.utils import timezone

from django_ray.lifecycle import enqueue
from django_ray.models import Schedule, TaskExecution
from django_ray.registry import resolve_task
from django_ray.scheduling.entries import MAX_RUNS, Entry, configured

logger = logging.getLogger("django_ray.schedule")


class Scheduler:
    """Enqueues the due runs of ``entries``, every ``interval`` seconds once started."""

    def __init__(
        self, entries: Sequence[Entry], *, grace_seconds: float, interval: float = 0.5
    ) -> None:
        self.entries = list(entries)
        self.grace = timedelta(seconds=grace_seconds)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: datetime | None = None) -> int:
        """Enqueue whatever is due by ``now``; how many runs were enqueued. One query when
        nothing is due; an entry that fails is logged and does not keep the others back."""
        now = now or timezone.now()
        names = [entry.name for entry in self.entries]
        states = {state.name: state for state in Schedule.objects.filter(name__in=names)}
        enqueued = 0
        for entry in self.entries:
            state = states.get(entry.name)
            if state is not None and not self._needs_look(entry, state, now):
                continue
            try:
                enqueued += self._look(entry, now)
            except Exception:
                logger.exception("Schedule %r (%s): enqueueing its due runs failed", *_of(entry))
        return enqueued

    def _needs_look(self, entry: Entry, state: Schedule, now: datetime) -> bool:
        """Whether something came due, or the entry's check is old enough to renew (so that
        a live scheduler is never taken for a gap)."""
        if state.last_due_at is None or state.checked_at is None:
            return True
        if now - state.checked_at >= self.grace / 3:
            return True
        return entry.next_after(state.last_due_at) <= now

    def _look(self, entry: Entry, now: datetime) -> int:
        with transaction.atomic():
            state, _ = Schedule.objects.select_for_update().get_or_create(name=entry.name)
            if state.last_due_at is None:
                state.last_due_at, state.checked_at = entry.last_at_or_before(now), now
                state.save()
                logger.info(
                    "Schedule %r (%s) is new: its first run is due at %s",
                    *(*_of(entry), entry.next_after(state.last_due_at).isoformat()),
                )
                return 0
            dues = entry.due_between(state.last_due_at, now, MAX_RUNS)
            gap = state.checked_at is None or now - state.checked_at > self.grace
            runs = self._caught_up(entry, state, dues, now) if gap else dues
            made = self._enqueue(entry, runs)
            if dues:
                state.last_due_at = dues[-1]
            state.checked_at = now
            if made:
                state.last_run_id, state.last_run_at = made[-1].pk, made[-1].scheduled_for
                state.runs += len(made)
            state.save()
        return len(made)

    def _caught_up(
        self, entry: Entry, state: Schedule, dues: list[datetime], now: datetime
    ) -> list[datetime]:
        """The runs the catch-up rule keeps of the due times in a gap."""
        runs = {"one": dues[-1:], "all": dues, "none": []}[entry.catch_up]
        if dues:
            since = state.checked_at.isoformat() if state.checked_at else "never"
            logger.warning(
                "Schedule %r (%s): no scheduler since %s; %d due time(s) passed meanwhile, "
                "catch_up=%r enqueues %d run(s)",
                *(*_of(entry), since, len(dues), entry.catch_up, len(runs)),
            )
        return runs

    def _enqueue(self, entry: Entry, runs: list[datetime]) -> list[TaskExecution]:
        """One READY row per due time; those already enqueued (by a racing writer) are
        skipped. ``task_enqueued`` goes out once the rows are committed."""
        if not runs:
            return []
        task = configured(resolve_task(entry.task), entry)
        calls = [enqueue.payload(task, entry.args, entry.kwargs) for _ in runs]
        rows = enqueue.new_rows(task, calls, backend=task.backend)
        for row, due in zip(rows, runs, strict=True):
            row.schedule_name, row.scheduled_for = entry.name, due
        TaskExecution.objects.bulk_create(rows, ignore_conflicts=True)
        kept = TaskExecution.objects.filter(pk__in=[row.pk for row in rows])
        written = {str(pk) for pk in kept.values_list("pk", flat=True)}
        made = [row for row in rows if str(row.pk) in written]
        for row, due in zip(rows, runs, strict=True):
            if str(row.pk) in written:
                logger.info(
                    "Schedule %r: enqueued %s [%s] due at %s",
                    *(entry.name, entry.task, row.pk, due.isoformat()),
                )
        results = [row.to_task_result(task) for row in made]
        backend = type(task.get_backend())

        def announce() -> None:
            for result in results:
                task_enqueued.send(backend, task_result=result)

        transaction.on_commit(announce)
        return made

    def start(self) -> None:
        """Run :meth:`tick` every ``interval`` seconds in a thread, until :meth:`stop`."""
        logger.info(
            "Scheduling %d entr%s: %s",
            len(self.entries),
            "y" if len(self.entries) == 1 else "ies",
            ", ".join(f"{entry.name} ({entry.when})" for entry in self.entries),
        )
        self._thread = threading.Thread(target=self._run, name="django-ray-schedule", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.tick()
                except Exception as exc:  # the database is away: try again next time
                    logger.warning("Scheduling failed (retrying): %s", exc)
                    connection.close()
        finally:
            connection.close()


def _of(entry: Entry) -> tuple[str, str]:
    return entry.name, entry.when
