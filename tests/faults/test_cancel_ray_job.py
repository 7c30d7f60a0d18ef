"""Cancelling a task that runs as a Ray Job: the job is stopped, the task FAILED, never retried."""

from __future__ import annotations

import time

import pytest
from ray.job_submission import JobSubmissionClient

from django_ray.cancel import cancel
from django_ray.models import TaskExecution
from django_ray.runtime.jobs import submission_id
from tests.faults.helpers import FAST, pid_alive, started_pids, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_cancelling_a_running_ray_job_stops_it_and_never_retries(spawn, ray_cluster, markers):
    worker = spawn(runner="ray_job", overrides={"WORKER_LEASE_SECONDS": 6})
    worker.worker_id()
    result = tasks.started_then_sleep.enqueue(str(markers), "job", 60)
    wait_for(lambda: started_pids(markers, "job"), 90, "the job to start the task", every=0.2)
    (pid,) = started_pids(markers, "job")
    asked = time.monotonic()

    assert "marked 1 RUNNING task" in cancel(result.id)
    wait_for(
        lambda: TaskExecution.objects.filter(pk=result.id).finished().exists(),
        30,
        "the cancelled task to be recorded",
    )
    recorded_in = time.monotonic() - asked
    wait_for(lambda: not pid_alive(pid), 15, "the job's process to end")
    time.sleep(2 * FAST["WORKER_HEARTBEAT_SECONDS"] + 0.5)  # a retry would have started

    row = TaskExecution.objects.get(pk=result.id)
    jobs = [
        (job.submission_id, str(job.status.value))
        for job in JobSubmissionClient(ray_cluster.dashboard_url).list_jobs()
        if job.submission_id and result.id in job.submission_id
    ]
    print(f"\n[cancel ray_job] recorded {recorded_in:.1f}s after cancel(); jobs={jobs}")
    assert (row.state, row.attempt) == ("FAILED", 1)
    assert [error["exception_class_path"] for error in row.errors] == [
        "django_ray.cancel.TaskCancelled"
    ]
    assert jobs == [(submission_id(result.id, 1), "STOPPED")]
    assert started_pids(markers, "job") == [pid]
    assert markers.count("job/done") == 0
    assert worker.alive()
