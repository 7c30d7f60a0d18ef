"""DJANGO_RAY["SCHEDULE"]: its checks, its due times, and the scheduler's rules, on the real
database (the clock is handed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from django_ray.conf import DjangoRaySettingsError, validate_on_startup
from django_ray.models import Schedule, TaskExecution
from django_ray.scheduling.entries import Entry, entries, problems
from django_ray.scheduling.scheduler import Scheduler

T0 = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)
ADD = "tests.testapp.tasks.add"


def test_each_problem_of_an_entry_is_named():
    found = problems(
        {
            "typo": {"task": ADD, "every": 5, "kwarg": {}},
            "both": {"task": ADD, "every": 5, "cron": "* * * * *"},
            "neither": {"task": ADD},
            "bad-cron": {"task": ADD, "cron": "61 * * * *"},
            "zero": {"task": ADD, "every": 0},
            "zone": {"task": ADD, "every": 5, "timezone": "Mars/Olympus"},
            "catch": {"task": ADD, "every": 5, "catch_up": "some"},
            "no-task": {"every": 5},
        }
    )

    assert found == [
        "DJANGO_RAY[\"SCHEDULE\"]['typo'] has an unknown key 'kwarg'; the keys are task, cron, "
        "every, args, kwargs, queue_name, priority, timezone, catch_up.",
        'DJANGO_RAY["SCHEDULE"][\'both\'] needs exactly one of "cron" (an expression) or '
        '"every" (seconds).',
        'DJANGO_RAY["SCHEDULE"][\'neither\'] needs exactly one of "cron" (an expression) or '
        '"every" (seconds).',
        "DJANGO_RAY[\"SCHEDULE\"]['bad-cron'] \"cron\" '61 * * * *' is not a valid cron "
        "expression: Bad minute.",
        'DJANGO_RAY["SCHEDULE"][\'zero\'] "every" must be a whole number of seconds >= 1; got 0.',
        'DJANGO_RAY["SCHEDULE"][\'zone\'] "timezone" must be an IANA time zone name such as '
        "\"Europe/Paris\"; got 'Mars/Olympus'.",
        'DJANGO_RAY["SCHEDULE"][\'catch\'] "catch_up" must be one of "one", "all", "none"; '
        "got 'some'.",
        'DJANGO_RAY["SCHEDULE"][\'no-task\'] needs "task", the dotted path of a task; got None.',
    ]
    assert problems([]) == ['DJANGO_RAY["SCHEDULE"] must be a dict of entries by name; got [].']


def test_unknown_tasks_queues_and_arguments_are_named_at_startup(settings):
    settings.DJANGO_RAY = {
        **settings.DJANGO_RAY,
        "SCHEDULE": {
            "ok": {"task": ADD, "every": 5, "args": [1, 2]},
            "missing": {"task": "tests.testapp.tasks.nope", "every": 5},
            "not-a-task": {"task": "tests.testapp.tasks.not_a_task", "every": 5},
            "queue": {"task": ADD, "every": 5, "queue_name": "nowhere"},
            "args": {"task": ADD, "every": 5, "args": [object()]},
        },
    }

    with pytest.raises(DjangoRaySettingsError) as caught:
        validate_on_startup(argv=["manage.py", "runserver"], environ={})

    found = caught.value.problems
    assert [problem.split("]", 2)[1] for problem in found] == [
        "['missing'",
        "['not-a-task'",
        "['queue'",
        "['args'",
    ]
    assert "tests.testapp.tasks.nope cannot be imported" in found[0]
    assert "nowhere" in found[2]
    assert "args" in found[3] and "JSON" in found[3]


def test_every_is_due_at_multiples_of_its_seconds_since_the_epoch():
    entry = Entry(name="e", task=ADD, every=300)

    assert entry.next_after(T0 + 7 * S) == T0 + 300 * S
    assert entry.last_at_or_before(T0 + 7 * S) == T0
    assert entry.due_between(T0 - S, T0 + 900 * S, limit=10) == [T0 + n * 300 * S for n in range(4)]
    assert entry.due_between(T0, T0 + 900 * S, limit=2) == [T0 + 600 * S, T0 + 900 * S]


def test_cron_is_read_in_the_entrys_time_zone_across_a_dst_change():
    entry = Entry(name="e", task=ADD, cron="30 2 * * *", timezone="Europe/Paris")
    # 2:30 does not exist in Paris on 2026-03-29 (clocks jump from 2:00 to 3:00).
    start = datetime(2026, 3, 27, 12, tzinfo=UTC)

    runs = entry.due_between(start, start + timedelta(days=3), limit=10)

    assert [run.isoformat() for run in runs] == [
        "2026-03-28T01:30:00+00:00",  # 2:30 CET
        "2026-03-29T01:00:00+00:00",  # 3:00 CEST: as cron does, at the jump
        "2026-03-30T00:30:00+00:00",  # 2:30 CEST
    ]
    assert entry.last_at_or_before(runs[2]) == runs[2]
    assert entry.next_after(runs[0]) == runs[1]


def scheduler(catch_up: str = "one", every: int = 1, grace: float = 60) -> Scheduler:
    (entry,) = entries(
        {"tick": {"task": ADD, "every": every, "args": [1, 2], "catch_up": catch_up}}
    )
    return Scheduler([entry], grace_seconds=grace)


def scheduled() -> list[datetime]:
    rows = TaskExecution.objects.filter(schedule_name="tick").order_by("scheduled_for")
    return list(rows.values_list("scheduled_for", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_new_entry_starts_at_its_next_due_time_and_late_ticks_skip_nothing():
    one = scheduler()

    assert one.tick(T0 + S / 2) == 0  # first seen: nothing from before it was scheduled
    assert one.tick(T0 + S * 1.2) == 1
    assert one.tick(T0 + S * 1.4) == 0
    assert one.tick(T0 + S * 6.5) == 5  # a late check (within the lease) skips nothing

    assert scheduled() == [T0 + n * S for n in range(1, 7)]
    row = TaskExecution.objects.get(scheduled_for=T0 + S)
    assert (row.task_path, row.args, row.state) == (ADD, [1, 2], "READY")
    state = Schedule.objects.get(name="tick")
    assert (state.runs, state.last_due_at, str(state.last_run_id)) == (
        6,
        T0 + 6 * S,
        str(TaskExecution.objects.get(scheduled_for=T0 + 6 * S).pk),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("one", [1, 100]), ("all", list(range(1, 101))), ("none", [1])],
)
def test_a_gap_with_no_scheduler_follows_the_catch_up_rule(catch_up, expected):
    one = scheduler(catch_up, grace=10)
    one.tick(T0)
    one.tick(T0 + S)

    one.tick(T0 + S * 100.5)  # 99.5 s with no check: longer than the lease

    assert scheduled() == [T0 + n * S for n in expected]
    assert one.tick(T0 + S * 101) == 1  # then each due time again


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_enqueue_each_due_time_once_even_past_the_lock():
    first, second = scheduler(), scheduler()
    first.tick(T0)
    assert [first.tick(T0 + 3 * S), second.tick(T0 + 3 * S)] == [3, 0]
    # A writer that raced past the lock (its state read before the other's commit)
    # meets the database's unique constraint, and enqueues nothing twice.
    Schedule.objects.filter(name="tick").update(last_due_at=T0)

    assert second.tick(T0 + 3 * S) == 0
    assert scheduled() == [T0 + S, T0 + 2 * S, T0 + 3 * S]
