"""The ray_job runner end to end: real database, real Ray cluster, real Jobs API."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
from django.core.management import call_command
from django.db import connection
from django.tasks import TaskResultStatus, default_task_backend
from ray.job_submission import JobSubmissionClient

from django_ray.lifecycle import attempts
from django_ray.lifecycle.outcomes import record_outcomes
from django_ray.models import TaskExecution
from django_ray.runtime.job import Job
from django_ray.runtime.jobs import RayJobDispatcher, submission_id
from django_ray.worker.loop import Worker, WorkerOptions
from tests.conftest import ROOT
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.django_db(transaction=True)]


def run_worker(ray_cluster, *extra: str) -> None:
    call_command(
        "django_ray_worker", "--ray-job", "--burst", "--address", ray_cluster.dashboard_url, *extra
    )


def run_worker_in_thread(ray_cluster) -> threading.Thread:
    def target() -> None:
        try:
            run_worker(ray_cluster)
        finally:
            connection.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)
    return value


def jobs_of(ray_cluster, execution_id: str) -> list[str]:
    client = JobSubmissionClient(ray_cluster.dashboard_url)
    return sorted(
        job.submission_id
        for job in client.list_jobs()
        if job.submission_id and execution_id in job.submission_id
    )


def test_tasks_run_as_ray_jobs_and_record_their_own_outcomes(ray_cluster, jobs_settings):
    ok = tasks.add.enqueue(20, 22)
    async_ok = tasks.async_add.enqueue(1, 2)
    context = tasks.whoami.enqueue()
    failure = tasks.fail.enqueue("in a job")

    run_worker(ray_cluster, "--concurrency", "4")

    assert default_task_backend.get_result(ok.id).return_value == 42
    assert default_task_backend.get_result(async_ok.id).return_value == 3
    assert default_task_backend.get_result(context.id).return_value == {
        "id": context.id,
        "attempt": 1,
    }
    failed = default_task_backend.get_result(failure.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "builtins.ValueError"
    assert failed.errors[0].traceback.rstrip().endswith("ValueError: in a job")
    rows = TaskExecution.objects.all()
    assert {row.ray_handle for row in rows} == {submission_id(str(row.pk), 1) for row in rows}
    assert jobs_of(ray_cluster, ok.id) == [submission_id(ok.id, 1)]


def test_a_job_stopped_from_outside_is_a_failed_attempt_and_is_retried(
    ray_cluster, jobs_settings, tmp_path
):
    result = tasks.slow_first_time.enqueue(str(tmp_path), 60)  # max_attempts=2
    worker = run_worker_in_thread(ray_cluster)
    handle = wait_for(
        lambda: (tmp_path / "slow").exists() and TaskExecution.objects.get(pk=result.id).ray_handle,
        60,
        "the first attempt to start",
    )

    JobSubmissionClient(ray_cluster.dashboard_url).stop_job(handle)
    worker.join(timeout=120)

    assert not worker.is_alive()
    done = default_task_backend.get_result(result.id)
    assert (done.status, done.return_value, done.attempts) == (TaskResultStatus.SUCCESSFUL, 2, 2)
    assert [e.exception_class_path for e in done.errors] == [
        "django_ray.runtime.jobs.RayJobStopped"
    ]
    row = TaskExecution.objects.get(pk=result.id)
    assert row.errors[0]["message"].startswith(f"Ray job {handle} ended STOPPED")
    assert row.lost_attempts == 1
    assert jobs_of(ray_cluster, result.id) == [
        submission_id(result.id, 1),
        submission_id(result.id, 2),
    ]


def test_resubmitting_an_attempt_after_a_crash_reuses_its_job(ray_cluster, jobs_settings):
    result = tasks.add.enqueue(1, 2)
    (row,) = attempts.claim(1, worker_id="crashed", queues=["default"], runner="ray_job")
    runtime_env = jobs_settings.DJANGO_RAY["RAY_RUNTIME_ENV"]
    RayJobDispatcher(ray_cluster.dashboard_url, runtime_env).submit(Job.of(row))

    # The worker "crashed" here; its successor submits the same attempt again.
    successor = RayJobDispatcher(ray_cluster.dashboard_url, runtime_env)
    successor.submit(Job.of(row))
    outcomes = wait_for(lambda: successor.wait(0.5), 60, "the job to end")
    record_outcomes({str(row.pk): row}, outcomes)

    assert jobs_of(ray_cluster, result.id) == [submission_id(result.id, 1)]
    assert default_task_backend.get_result(result.id).return_value == 3


def test_a_job_asking_for_missing_resources_waits_visibly(ray_cluster, jobs_settings):
    result = tasks.add.using(resources={"missing": 1}, max_attempts=1).enqueue(1, 1)
    runtime_env = jobs_settings.DJANGO_RAY["RAY_RUNTIME_ENV"]
    dispatcher = RayJobDispatcher(ray_cluster.dashboard_url, runtime_env, poll_seconds=0.2)
    worker = Worker(
        WorkerOptions(queues=("default",), concurrency=1, heartbeat_seconds=5, lease_seconds=30),
        dispatcher,
    )
    assert worker.tick().claimed == 1

    wait_for(
        lambda: (
            worker.collect(0.3) == 0
            and TaskExecution.objects.get(pk=result.id).ray_status == "PENDING"
        ),
        60,
        "the row to show the job pending on Ray",
    )
    row = TaskExecution.objects.get(pk=result.id)
    client = JobSubmissionClient(ray_cluster.dashboard_url)
    assert row.state == "RUNNING"
    info = client.get_job_info(row.ray_handle)
    assert (str(info.status.value), info.metadata["django_ray_task"]) == (
        "PENDING",
        "tests.testapp.tasks.add",
    )
    # Ray 2.60 keeps a job that waits for its entrypoint's resources PENDING even
    # after stop_job (until its start timeout); the session's cluster ends it.
    client.stop_job(row.ray_handle)


def test_a_stale_attempt_runs_nothing(jobs_settings, tmp_path):
    result = tasks.mark_execution.enqueue(str(tmp_path), "stale")
    (row,) = attempts.claim(1, worker_id="w", queues=["default"], runner="ray_job")
    env = {**jobs_settings.DJANGO_RAY["RAY_RUNTIME_ENV"]["env_vars"]}
    env |= {"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"}

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "django_ray.runtime.job_entrypoint",
            result.id,
            "1",
            str(uuid.uuid4()),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == (
        f"Attempt 1 of {result.id} no longer owns its row; nothing runs."
    )
    assert not (tmp_path / "stale").exists()
    row.refresh_from_db()
    assert Counter([row.state]) == {"RUNNING": 1}
