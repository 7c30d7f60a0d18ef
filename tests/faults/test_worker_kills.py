"""F1 and F2: worker processes killed with SIGKILL while their tasks run."""

from __future__ import annotations

import time

import pytest
from ray.job_submission import JobSubmissionClient

from django_ray.models import TaskExecution
from django_ray.runtime.jobs import TERMINAL, submission_id
from tests.faults.helpers import rows_of, tally, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Lost attempts count as attempts: room for a task to be caught by every kill.
OVERRIDES = {"MAX_TASK_ATTEMPTS": 10}
# Submitting Ray jobs blocks the loop (one HTTP call per job) on a busy machine.
JOBS_OVERRIDES = {"WORKER_LEASE_SECONDS": 6}


def test_f1_two_workers_one_killed_three_times_loses_nothing(spawn, markers):
    concurrency, kills = 4, 3
    steady = spawn(name="steady", concurrency=concurrency, overrides=OVERRIDES)
    victim = spawn(name="victim", concurrency=concurrency, overrides=OVERRIDES)
    steady.worker_id()
    victim_id = victim.worker_id()
    results = {
        f"t{i:03d}": tasks.mark_execution.enqueue(str(markers), f"t{i:03d}", 0.1).id
        for i in range(200)
    }

    in_flight_at_kills: list[int] = []
    recovery: list[float] = []
    for kill in range(1, kills + 1):
        wait_for(
            lambda kill=kill, victim_id=victim_id: (
                TaskExecution.objects.finished().count() >= 25 * kill and rows_of(victim_id)
            ),
            120,
            f"kill {kill}: progress and tasks in flight on the victim",
        )
        victim.kill()
        killed_at = time.monotonic()
        in_flight_at_kills.append(rows_of(victim_id))
        assert TaskExecution.objects.finished().count() < 200, "the run ended before the kill"
        victim.start()
        wait_for(lambda killed=victim_id: not rows_of(killed), 60, f"recovery after kill {kill}")
        recovery.append(time.monotonic() - killed_at)
        victim_id = victim.worker_id()

    wait_for(lambda: TaskExecution.objects.finished().count() == 200, 180, "all 200 tasks")

    rows = list(TaskExecution.objects.all())
    summary = tally(
        "F1",
        results,
        markers,
        recovery_seconds=max(recovery),
        kills=kills,
        in_flight_at_kills=in_flight_at_kills,
        lost_attempts=sum(row.lost_attempts for row in rows),
    ).report()
    assert summary.lost == 0
    assert summary.tasks == len(rows) == 200
    assert {row.state for row in rows} == {"SUCCESSFUL"}
    assert summary.duplicates <= sum(in_flight_at_kills) <= concurrency * kills
    assert sum(row.lost_attempts for row in rows) <= sum(in_flight_at_kills)
    assert steady.alive() and victim.alive()


def test_f2_ray_jobs_of_a_killed_worker_are_adopted_and_run_once(spawn, ray_cluster, markers):
    first = spawn(name="first", runner="ray_job", overrides=JOBS_OVERRIDES)
    first_id = first.worker_id()
    results = {
        f"j{i}": tasks.started_then_sleep.enqueue(str(markers), f"j{i}", 10).id for i in range(3)
    }
    wait_for(
        lambda: all(markers.count(f"{token}/started") for token in results),
        90,
        "every job to start its task",
        every=0.2,
    )
    first.kill()
    killed_at = time.monotonic()
    assert rows_of(first_id) == 3

    second = spawn(name="second", runner="ray_job", overrides=JOBS_OVERRIDES)
    second_id = second.worker_id()
    wait_for(lambda: rows_of(second_id) == 3, 30, "the second worker to adopt the three jobs")
    adopted_in = time.monotonic() - killed_at
    wait_for(lambda: TaskExecution.objects.finished().count() == 3, 60, "the three tasks")
    client = JobSubmissionClient(ray_cluster.dashboard_url)

    def jobs_by_task() -> dict[str, list[tuple[str, str]]] | None:
        jobs = client.list_jobs()
        found = {
            result_id: sorted(
                (job.submission_id, str(job.status.value))
                for job in jobs
                if job.submission_id and result_id in job.submission_id
            )
            for result_id in results.values()
        }
        ended = all(status in TERMINAL for mine in found.values() for _, status in mine)
        return found if ended else None

    jobs = wait_for(jobs_by_task, 30, "the jobs to end", every=0.5)

    # An execution is a start of the task (the Ray job ran it); each must end, once.
    starts = {token: markers.count(f"{token}/started") for token in results}
    ends = {token: markers.count(f"{token}/done") for token in results}
    summary = tally("F2", results, markers, recovery_seconds=adopted_in)
    summary.executions = sum(starts.values())
    summary.duplicates = sum(count - 1 for count in starts.values() if count > 1)
    summary.report()
    rows = list(TaskExecution.objects.all())
    assert summary.lost == 0
    assert "Adopted" in second.output()
    assert {row.worker for row in rows} == {second_id}
    assert starts == ends == dict.fromkeys(results, 1), (
        "the adopted jobs ran their tasks, but their own records were refused; see "
        f"{[row.errors for row in rows]}"
    )
    assert {(row.state, row.attempt, row.lost_attempts) for row in rows} == {("SUCCESSFUL", 1, 0)}
    assert all(row.worker_ids == [first_id] for row in rows)
    assert jobs == {
        result_id: [(submission_id(result_id, 1), "SUCCEEDED")] for result_id in results.values()
    }
