"""F4: the worker's PostgreSQL connections are killed while it works.

Only the worker's own backends are terminated (``pg_terminate_backend`` on this test's
database). Restarting PostgreSQL itself would cut the connections of every other test run
on this machine, so this suite does not do it.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from django_ray.models import TaskExecution
from tests.faults.helpers import database_name, tally, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def terminate_other_backends() -> int:
    """Kill every connection to the test database but this process's; how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [database_name()],
        )
        return sum(1 for (killed,) in cursor.fetchall() if killed)


def test_f4_worker_backends_terminated_mid_run(spawn, markers):
    worker = spawn(concurrency=4)
    worker.worker_id()
    results = {
        f"d{i:02d}": tasks.mark_execution.enqueue(str(markers), f"d{i:02d}", 0.3).id
        for i in range(40)
    }
    terminated = []
    last_kill = time.monotonic()
    for round_ in range(3):
        wait_for(
            lambda round_=round_: (
                TaskExecution.objects.running().exists()
                and TaskExecution.objects.finished().count() >= 5 * (round_ + 1)
            ),
            60,
            f"tasks in flight before termination {round_ + 1}",
        )
        terminated.append(terminate_other_backends())
        last_kill = time.monotonic()
        time.sleep(0.7)
    progress = TaskExecution.objects.finished().count()
    assert progress < len(results), "the run ended before the last termination"
    wait_for(lambda: TaskExecution.objects.finished().count() > progress, 30, "progress after it")
    recovered_in = time.monotonic() - last_kill
    try:
        wait_for(lambda: TaskExecution.objects.finished().count() == len(results), 60, "every task")
    except AssertionError as exc:
        left = TaskExecution.objects.exclude(state__in=["SUCCESSFUL", "FAILED"])
        rows = list(left.values_list("state", "attempt", "worker", "ray_handle"))
        message = f"{exc}; unfinished (state, attempt, worker, ray handle): {rows}"
        raise AssertionError(message) from None

    summary = tally(
        "F4", results, markers, recovery_seconds=recovered_in, backends_terminated=terminated
    ).report()
    assert summary.lost == 0
    assert summary.duplicates == 0
    assert all(count >= 1 for count in terminated), terminated
    assert not TaskExecution.objects.running().exists()
    assert set(TaskExecution.objects.values_list("state", flat=True)) == {"SUCCESSFUL"}
    assert worker.alive()
    assert "Database unavailable" in worker.output()
