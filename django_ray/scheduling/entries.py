"""The entries of ``DJANGO_RAY["SCHEDULE"]``: their checks, and the times each is due.

An entry names a task and when it runs, as a cron expression (parsed by
``cronsim``, in the entry's time zone) or every so many seconds (due at the
multiples of ``every`` since the Unix epoch, so every worker agrees on them)::

    DJANGO_RAY = {
        "SCHEDULE": {
            "nightly-report": {"task": "reports.tasks.build", "cron": "30 2 * * *"},
            "poll-feeds": {"task": "feeds.tasks.poll", "every": 300, "queue_name": "io"},
        }
    }
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KEYS = ("task", "cron", "every", "args", "kwargs", "queue_name", "priority", "timezone")
CATCH_UP_KEY = "catch_up"
CATCH_UP = ("one", "all", "none")
"""What runs for the due times that passed while no worker was scheduling: one run for
the whole gap (the default), a run for each (at most :data:`MAX_RUNS`), or none."""
MAX_RUNS = 1000
"""The most runs of one entry enqueued at once (the newest due times win)."""
MAX_NAME = 200  # the column's length


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    name: str
    task: str
    cron: str | None = None
    every: int | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue_name: str | None = None
    priority: int | None = None
    timezone: str | None = None
    catch_up: str = "one"

    @property
    def when(self) -> str:
        return f"cron {self.cron!r}" if self.cron is not None else f"every {self.every} s"

    def zone(self) -> ZoneInfo:
        from django.conf import settings

        return ZoneInfo(self.timezone or getattr(settings, "TIME_ZONE", None) or "UTC")

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment``."""
        return self.due_between(moment, None, limit=1)[0]

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The latest due time at or before ``moment``."""
        if self.every is not None:
            return _from_epoch(math.floor(moment.timestamp() / self.every) * self.every)
        from cronsim import CronSim

        assert self.cron is not None
        start = (moment + timedelta(microseconds=1)).astimezone(self.zone())
        return next(CronSim(self.cron, start, reverse=True)).astimezone(UTC)

    def due_between(self, after: datetime, until: datetime | None, limit: int) -> list[datetime]:
        """The due times in (``after``, ``until``], oldest first: the newest ``limit`` of
        them (with no ``until``: the next ``limit``)."""
        if self.every is not None:
            first = math.floor(after.timestamp() / self.every) + 1
            last = first + limit - 1
            if until is not None:
                last = math.floor(until.timestamp() / self.every)
                first = max(first, last - limit + 1)
            return [_from_epoch(n * self.every) for n in range(first, last + 1)]
        from cronsim import CronSim

        assert self.cron is not None
        if until is not None:  # walk back from ``until``, so a long gap costs ``limit`` steps
            found: list[datetime] = []
            start = (until + timedelta(microseconds=1)).astimezone(self.zone())
            for due in CronSim(self.cron, start, reverse=True):
                if due <= after or len(found) == limit:
                    break
                found.append(due.astimezone(UTC))
            return found[::-1]
        times = CronSim(self.cron, after.astimezone(self.zone()))
        return [next(times).astimezone(UTC) for _ in range(limit)]


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def entries(schedule: Mapping[str, Mapping[str, Any]]) -> list[Entry]:
    """The entries of a valid ``SCHEDULE``, by name."""
    return [
        Entry(
            name=name,
            args=tuple(raw.get("args", ())),
            kwargs=dict(raw.get("kwargs", {})),
            catch_up=raw.get(CATCH_UP_KEY, "one"),
            **{key: raw[key] for key in KEYS if key in raw and key not in ("args", "kwargs")},
        )
        for name, raw in schedule.items()
    ]


def problems(schedule: Any) -> list[str]:
    """What is wrong with a ``SCHEDULE`` value, without importing its tasks: one sentence
    per problem, each naming the entry (``DJANGO_RAY["SCHEDULE"]["name"]``)."""
    if not isinstance(schedule, Mapping):
        return [f'DJANGO_RAY["SCHEDULE"] must be a dict of entries by name; got {schedule!r}.']
    found = []
    for name, raw in schedule.items():
        where = f'DJANGO_RAY["SCHEDULE"][{name!r}]'
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            found.append(f"{where}: a name must be a non-empty string of at most {MAX_NAME}.")
        elif not isinstance(raw, Mapping):
            found.append(f"{where} must be a dict with a task and a cron or every; got {raw!r}.")
        else:
            found += [f"{where} {problem}" for problem in _entry_problems(raw)]
    return found


def _entry_problems(raw: Mapping[str, Any]) -> list[str]:
    found = []
    known = (*KEYS, CATCH_UP_KEY)
    for key in raw:
        if key not in known:
            found.append(f"has an unknown key {key!r}; the keys are {', '.join(known)}.")
    task = raw.get("task")
    if not isinstance(task, str) or "." not in task:
        found.append(f'needs "task", the dotted path of a task; got {task!r}.')
    if ("cron" in raw) == ("every" in raw):
        found.append('needs exactly one of "cron" (an expression) or "every" (seconds).')
    if "cron" in raw and (problem := _cron_problem(raw["cron"])):
        found.append(problem)
    every = raw.get("every", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        found.append(f'"every" must be a whole number of seconds >= 1; got {every!r}.')
    if not isinstance(raw.get("args", ()), Sequence) or isinstance(raw.get("args"), str):
        found.append(f'"args" must be a list; got {raw["args"]!r}.')
    if not isinstance(raw.get("kwargs", {}), Mapping):
        found.append(f'"kwargs" must be a dict; got {raw["kwargs"]!r}.')
    if not isinstance(raw.get("queue_name", ""), str):
        found.append(f'"queue_name" must be a string; got {raw["queue_name"]!r}.')
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        found.append(f'"priority" must be an integer; got {priority!r}.')
    if "timezone" in raw and (problem := _zone_problem(raw["timezone"])):
        found.append(problem)
    if raw.get(CATCH_UP_KEY, "one") not in CATCH_UP:
        choices = ", ".join(f'"{choice}"' for choice in CATCH_UP)
        found.append(f'"{CATCH_UP_KEY}" must be one of {choices}; got {raw[CATCH_UP_KEY]!r}.')
    return found


def _cron_problem(expression: Any) -> str | None:
    from cronsim import CronSim, CronSimError

    if not isinstance(expression, str):
        return f'"cron" must be a string; got {expression!r}.'
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as exc:
        return f'"cron" {expression!r} is not a valid cron expression: {exc}.'
    return None


def _zone_problem(zone: Any) -> str | None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, TypeError, ValueError):
        return f'"timezone" must be an IANA time zone name such as "Europe/Paris"; got {zone!r}.'
    return None


def task_problems(schedule: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What is wrong with the tasks of a ``SCHEDULE`` that :func:`problems` passed: each task
    must import, be a Django task, take the entry's queue and priority, and its arguments
    must be JSON. Imports the tasks, so only once the apps are ready."""
    from django.tasks.exceptions import InvalidTask

    from django_ray.backends import RayTaskBackend
    from django_ray.lifecycle.enqueue import payload
    from django_ray.registry import UnregisteredTask, resolve_task

    found = []
    for entry in entries(schedule):
        where = f'DJANGO_RAY["SCHEDULE"][{entry.name!r}]'
        try:
            task = resolve_task(entry.task)
        except UnregisteredTask as exc:
            found.append(f"{where}: {exc}")
            continue
        if not isinstance(task.get_backend(), RayTaskBackend):
            found.append(
                f"{where}: the task {entry.task} goes to the backend {task.backend!r}, "
                "which is not a RayTaskBackend; only django-ray's workers run schedules."
            )
            continue
        try:
            payload(configured(task, entry), entry.args, entry.kwargs)
        except (InvalidTask, TypeError, ValueError) as exc:
            found.append(f"{where}: {exc}")
    return found


def configured(task: Any, entry: Entry) -> Any:
    """The entry's task, with its queue and priority."""
    options = {"queue_name": entry.queue_name, "priority": entry.priority}
    options = {key: value for key, value in options.items() if value is not None}
    return task.using(**options) if options else task
