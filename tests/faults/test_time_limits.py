"""Time limits that stop a task on Ray: ``@task(timeout=...)``, ``.using(timeout=...)`` and
``DJANGO_RAY["TASK_TIMEOUT_SECONDS"]``, through real worker processes."""

from __future__ import annotations

import time

import pytest
from django.tasks import TaskResultStatus, default_task_backend
from ray.job_submission import JobSubmissionClient

from django_ray.models import TaskExecution
from django_ray.runtime.jobs import submission_id
from tests.faults.helpers import pid_alive, started_pids, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TIMEOUT = "django_ray.exceptions.TaskTimeout"


def finished(result_id: str, within: float) -> TaskExecution:
    return wait_for(
        lambda: TaskExecution.objects.filter(pk=result_id).finished().first(),
        within,
        f"execution {result_id} to finish",
    )


def overrun(row: TaskExecution) -> float:
    """How long after its limit the row's last attempt was recorded as ended."""
    assert row.finished_at is not None and row.last_attempted_at is not None
    return (row.finished_at - row.last_attempted_at).total_seconds() - row.options["timeout"]


def warm_up(markers, count: int) -> None:
    """Run ``count`` tasks at once, so Ray worker processes are up before the limits count
    (the limit includes a first start, which takes seconds on a busy machine)."""
    results = [tasks.started_then_sleep.enqueue(str(markers), "warm", 0.5) for _ in range(count)]
    for result in results:
        finished(result.id, 90)


def test_ray_core_kills_sync_async_and_blocked_tasks_at_their_limit(spawn, markers):
    spawn(runner="ray_core", concurrency=4).worker_id()
    warm_up(markers, 3)
    limited = {
        "spin": tasks.started_then_spin.using(timeout=3).enqueue(str(markers), "spin"),
        "await": tasks.started_then_await.using(timeout=3).enqueue(str(markers), "await", 60),
        "sleep": tasks.started_then_sleep.using(timeout=3, max_attempts=1).enqueue(
            str(markers), "sleep", 60
        ),
    }

    rows = {name: finished(result.id, 90) for name, result in limited.items()}

    for name, row in rows.items():
        assert row.state == "FAILED", name
        assert [error["exception_class_path"] for error in row.errors] == [TIMEOUT], name
        assert "time limit of 3 s" in row.errors[0]["message"]
        assert 0 <= overrun(row) < 2.5, (name, overrun(row))
        (pid,) = started_pids(markers, name)
        wait_for(lambda pid=pid: not pid_alive(pid), 15, f"the Ray worker process of {name}")
    assert markers.count("sleep/done") == 0
    overruns = {name: round(overrun(row), 2) for name, row in rows.items()}
    print(f"\n[time limits] overrun past the limit: {overruns}")

    after = tasks.add.enqueue(2, 3)
    assert finished(after.id, 60).state == "SUCCESSFUL"
    assert default_task_backend.get_result(after.id).return_value == 5


def test_a_timed_out_attempt_is_retried_unless_the_denylist_names_task_timeout(spawn, markers):
    spawn(runner="ray_core", overrides={"TASK_TIMEOUT_SECONDS": 1}).worker_id()
    retried = tasks.started_then_sleep.using(max_attempts=2).enqueue(str(markers), "retried", 60)
    unlimited = tasks.started_then_sleep.using(timeout=0).enqueue(str(markers), "unlimited", 4)

    row = finished(retried.id, 90)
    assert (row.state, row.attempt) == ("FAILED", 2)
    assert [error["exception_class_path"] for error in row.errors] == [TIMEOUT, TIMEOUT]
    assert finished(unlimited.id, 60).state == "SUCCESSFUL"  # timeout=0: no limit


def test_ray_job_is_stopped_at_its_limit(spawn, markers, ray_cluster):
    spawn(runner="ray_job").worker_id()
    result = tasks.started_then_sleep.using(timeout=8, max_attempts=1).enqueue(
        str(markers), "job", 60
    )
    wait_for(lambda: started_pids(markers, "job"), 90, "the job to start the task", every=0.2)

    row = finished(result.id, 60)

    assert row.state == TaskResultStatus.FAILED
    assert [error["exception_class_path"] for error in row.errors] == [TIMEOUT]
    print(f"\n[time limits] Ray job stopped {overrun(row):.1f} s past its limit")
    assert 0 <= overrun(row) < 3, overrun(row)
    (pid,) = started_pids(markers, "job")
    wait_for(lambda: not pid_alive(pid), 15, "the job's process to end")
    status = JobSubmissionClient(ray_cluster.dashboard_url).get_job_status(
        submission_id(result.id, 1)
    )
    assert str(status.value) == "STOPPED"
    assert markers.count("job/done") == 0


def test_the_limit_holds_when_the_worker_dies_and_another_adopts_the_job(spawn, markers):
    first = spawn(runner="ray_job", name="first")
    first.worker_id()
    result = tasks.started_then_sleep.using(timeout=6, max_attempts=1).enqueue(
        str(markers), "adopted", 60
    )
    wait_for(lambda: started_pids(markers, "adopted"), 90, "the job to start the task", every=0.2)
    first.kill()
    killed_at = time.monotonic()
    spawn(runner="ray_job", name="second").worker_id()

    row = finished(result.id, 60)

    assert row.state == "FAILED"
    assert [error["exception_class_path"] for error in row.errors] == [TIMEOUT]
    assert row.worker != "" and f"-{first.pid}-" not in row.worker  # the adopter recorded it
    # Counted from the attempt's start as the row has it, not from the adoption.
    print(f"\n[time limits] adopted job stopped {overrun(row):.1f} s past its limit")
    assert overrun(row) < 8, overrun(row)
    (pid,) = started_pids(markers, "adopted")
    wait_for(lambda: not pid_alive(pid), 15, "the job's process to end")
    assert time.monotonic() - killed_at < 60
