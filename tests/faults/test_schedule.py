"""Periodic tasks through real worker processes: three schedulers, each due time enqueued
once, none skipped while one lived, and one run for the gap after they all died."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from django_ray.models import Schedule, TaskExecution
from tests.faults.helpers import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SECOND = timedelta(seconds=1)
SCHEDULE = {"tick": {"task": "tests.testapp.tasks.add", "every": 1, "args": [1, 2]}}
# The lease is the gap after which the catch-up rule applies: long enough that a busy
# machine's slow tick is no gap, short enough for the test.
OVERRIDES = {"SCHEDULE": SCHEDULE, "WORKER_LEASE_SECONDS": 6, "WORKER_HEARTBEAT_SECONDS": 1}


def due_times() -> list:
    rows = TaskExecution.objects.filter(schedule_name="tick").order_by("scheduled_for")
    return list(rows.values_list("scheduled_for", flat=True))


def contiguous(dues: list) -> bool:
    return all(later - earlier == SECOND for earlier, later in itertools.pairwise(dues))


def test_three_schedulers_enqueue_each_due_time_once_and_catch_up_once(spawn):
    workers = [
        spawn(runner="ray_core", name=f"scheduler-{n}", extra=["--schedule"], overrides=OVERRIDES)
        for n in range(3)
    ]
    for worker in workers:
        worker.worker_id()
    all_up = timezone.now()
    time.sleep(20)
    for worker in workers:
        worker.kill()
    killed = timezone.now()
    time.sleep(9)  # longer than the lease: no scheduler for a whole gap
    restarted = spawn(
        runner="ray_core", name="restarted", extra=["--schedule"], overrides=OVERRIDES
    )
    restarted.worker_id()
    back = timezone.now()
    wait_for(lambda: len([d for d in due_times() if d > back]) >= 3, 30, "runs after the restart")

    dues = due_times()
    before = [due for due in dues if due <= killed]
    after = [due for due in dues if due > killed]
    print(
        f"\n[schedule] {len(before)} runs while 3 lived, then {len(after)} after a "
        f"{(back - killed).total_seconds():.1f} s gap; first after: {after[0] - before[-1]}"
    )
    assert len(dues) == len(set(dues))  # never enqueued twice
    assert before[0] <= all_up + 2 * SECOND and before[-1] >= killed - 2 * SECOND
    assert contiguous(before), before  # nothing skipped while one was alive
    # The gap's due times (about ten) made one run, at the latest of them; then every
    # second again.
    assert after[0] - before[-1] >= 8 * SECOND
    assert after[0] <= back + SECOND
    assert contiguous(after), after
    assert "catch_up='one' enqueues 1 run(s)" in restarted.output()
    state = Schedule.objects.get(name="tick")
    assert state.runs == len(dues) and str(state.last_run_id) in {
        str(pk)
        for pk in TaskExecution.objects.filter(schedule_name="tick").values_list("pk", flat=True)
    }
    # Nothing was lost with the killed workers: every run ends SUCCESSFUL.
    wait_for(
        lambda: (
            not TaskExecution.objects.filter(schedule_name="tick", scheduled_for__lte=back)
            .exclude(state="SUCCESSFUL")
            .exists()
        ),
        60,
        "every run to succeed",
    )
