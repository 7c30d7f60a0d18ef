"""F5, F6, F7 and cancellation, against two ray_core worker processes shared by the module.

The workers serve the ``default`` queue only, so a task put on ``other`` stays READY.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend
from django.utils import timezone

from django_ray.cancel import cancel
from django_ray.models import TaskExecution
from tests.faults.helpers import (
    FAST,
    Summary,
    WorkerProcess,
    pid_alive,
    started_pids,
    tally,
    wait_for,
)
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CANCELLED = "django_ray.cancel.TaskCancelled"
# Long enough that a retry (RETRY_BACKOFF_SECONDS=0) would have been claimed and started.
SETTLE_SECONDS = 2 * FAST["WORKER_HEARTBEAT_SECONDS"] + 0.5


@pytest.fixture(scope="module")
def workers(ray_cluster, django_db_setup, django_db_blocker, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("shared-workers")
    with django_db_blocker.unblock():
        started = [
            WorkerProcess(ray_cluster, log_dir, name=f"shared-{n}", extra=["--queue", "default"])
            for n in (1, 2)
        ]
        for worker in started:
            worker.start()
        for worker in started:
            worker.worker_id()
    yield started
    for worker in started:
        worker.request_stop()
    codes = [worker.stop() for worker in started]
    assert codes == [0, 0], "\n".join(worker.output()[-3000:] for worker in started)


def finished(result_id: str, state: str = "") -> bool:
    rows = TaskExecution.objects.filter(pk=result_id)
    return rows.filter(state=state).exists() if state else rows.finished().exists()


def test_f5_a_task_that_kills_its_ray_worker_fails_after_its_attempts(workers, markers):
    result = tasks.crash_worker.enqueue(str(markers))  # max_attempts=2, no backoff
    enqueued = time.monotonic()
    wait_for(lambda: finished(result.id), 60, "the crashing task to end")
    ended_in = time.monotonic() - enqueued
    time.sleep(SETTLE_SECONDS)

    row = TaskExecution.objects.get(pk=result.id)
    crashes = markers.count("crash")
    summary = Summary(
        "F5",
        tasks=1,
        executions=crashes,
        lost=int(row.state != "FAILED"),
        duplicates=crashes - row.attempt,
        recovery_seconds=ended_in,
        notes={"attempts": row.attempt, "lost_attempts": row.lost_attempts},
    ).report()
    assert summary.lost == 0
    assert (row.state, row.attempt, row.lost_attempts, crashes) == ("FAILED", 2, 2, 2)
    assert [error["attempt"] for error in row.errors] == [1, 2]
    assert all(error["exception_class_path"].startswith("ray.") for error in row.errors)
    assert all(worker.alive() for worker in workers)


def test_f6_a_task_deferred_past_several_lease_periods_runs_once(workers, markers):
    run_after = timezone.now() + timedelta(seconds=3 * FAST["WORKER_LEASE_SECONDS"] + 1)
    result = tasks.mark_execution.using(run_after=run_after).enqueue(str(markers), "deferred")

    time.sleep(max((run_after - timezone.now()).total_seconds() - 0.5, 0))
    row = TaskExecution.objects.get(pk=result.id)
    assert (row.state, row.attempt, markers.count("deferred")) == ("READY", 0, 0)
    wait_for(lambda: finished(result.id), 30, "the deferred task")
    time.sleep(SETTLE_SECONDS)

    row = TaskExecution.objects.get(pk=result.id)
    late = (row.started_at - run_after).total_seconds()
    summary = tally(
        "F6", {"deferred": result.id}, markers, recovery_seconds=0, started_late_s=round(late, 1)
    ).report()
    assert summary.lost == 0
    assert summary.executions == 1
    assert (row.attempt, row.lost_attempts, row.errors) == (1, 0, [])
    assert row.started_at >= run_after


class RolledBack(Exception):
    pass


def test_f7_a_rolled_back_enqueue_runs_nothing_and_a_committed_one_runs_once(workers, markers):
    with pytest.raises(RolledBack), transaction.atomic():
        doomed = tasks.mark_execution.enqueue(str(markers), "rolled-back")
        raise RolledBack
    with transaction.atomic():
        kept = tasks.mark_execution.enqueue(str(markers), "committed")
        time.sleep(1)  # uncommitted: no worker can see it yet
        assert markers.count("committed") == 0
    committed_at = time.monotonic()
    wait_for(lambda: finished(kept.id), 30, "the committed task")
    ran_in = time.monotonic() - committed_at
    time.sleep(SETTLE_SECONDS)

    summary = tally("F7", {"committed": kept.id}, markers, recovery_seconds=ran_in).report()
    assert summary.lost == 0
    assert summary.executions == 1
    assert markers.count("rolled-back") == 0
    assert not TaskExecution.objects.filter(pk=doomed.id).exists()
    assert [
        (str(pk), attempt) for pk, attempt in TaskExecution.objects.values_list("pk", "attempt")
    ] == [(kept.id, 1)]


def test_cancelling_a_ready_task_fails_it_at_once(workers, markers):
    # On a queue no worker serves, so it is certainly READY (committed) when cancelled.
    result = tasks.mark_execution.using(queue_name="other").enqueue(str(markers), "waiting")
    assert TaskExecution.objects.get(pk=result.id).state == "READY"

    message = cancel(result.id, reason="not wanted")

    assert message.startswith("Cancelled 1 READY task")
    done = default_task_backend.get_result(result.id)
    assert done.status == TaskResultStatus.FAILED
    assert [(e.exception_class_path, e.traceback) for e in done.errors] == [(CANCELLED, "")]
    row = TaskExecution.objects.get(pk=result.id)
    assert (row.attempt, row.errors[0]["message"]) == (0, "not wanted")
    assert row.cancelled_at is not None and row.finished_at is not None
    assert cancel(result.id).startswith("Cancelled 0 READY tasks; 1 skipped")


def test_cancelling_a_running_ray_core_task_stops_it_and_never_retries(workers, markers):
    result = tasks.started_then_sleep.enqueue(str(markers), "long", 60)
    wait_for(lambda: started_pids(markers, "long"), 60, "the task to start on Ray")
    time.sleep(SETTLE_SECONDS)  # a second start (seen once in CI) shows here, with the logs
    started = started_pids(markers, "long")
    row = TaskExecution.objects.get(pk=result.id)
    assert len(started) == 1, (
        f"started {len(started)} times; row attempt={row.attempt} errors={row.errors}\n"
        + "\n".join(worker.output()[-4000:] for worker in workers)
    )
    (pid,) = started
    assert pid_alive(pid)
    asked = time.monotonic()

    assert "marked 1 RUNNING task" in cancel(result.id)
    wait_for(lambda: finished(result.id), 15, "the cancelled task to be recorded")
    recorded_in = time.monotonic() - asked
    wait_for(lambda: not pid_alive(pid), 15, "Ray to kill the process running the task")
    time.sleep(SETTLE_SECONDS)

    row = TaskExecution.objects.get(pk=result.id)
    print(
        f"\n[cancel ray_core] recorded {recorded_in:.1f}s after cancel(); "
        f"state={row.state} attempt={row.attempt}"
    )
    assert (row.state, row.attempt, row.lost_attempts) == ("FAILED", 1, 0)
    assert [error["exception_class_path"] for error in row.errors] == [CANCELLED]
    assert default_task_backend.get_result(result.id).errors[0].exception_class_path == CANCELLED
    assert started_pids(markers, "long") == [pid]
    assert markers.count("long/done") == 0
