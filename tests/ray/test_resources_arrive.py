"""A task asking for a resource its cluster lacks waits, visibly, and finishes where it exists."""

from __future__ import annotations

import time

import pytest
from django.tasks import TaskResultStatus, default_task_backend

from django_ray.models import TaskExecution
from django_ray.runtime.jobs import RayJobDispatcher
from django_ray.worker.loop import Worker, WorkerOptions
from tests.ray_cluster import LocalRayCluster
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.django_db(transaction=True)]


def worker_on(url: str, runtime_env: dict) -> Worker:
    return Worker(
        WorkerOptions(queues=("default",), concurrency=1, heartbeat_seconds=1, lease_seconds=3),
        RayJobDispatcher(url, runtime_env, poll_seconds=0.2),
    )


def spin(worker: Worker, until, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        worker.tick()
        worker.collect(0.2)


def test_a_task_pending_on_resources_finishes_on_a_cluster_that_has_them(
    ray_cluster, jobs_settings
):
    jobs_settings.DJANGO_RAY = {**jobs_settings.DJANGO_RAY, "STUCK_TASK_TIMEOUT_SECONDS": 1}
    runtime_env = jobs_settings.DJANGO_RAY["RAY_RUNTIME_ENV"]
    result = tasks.add.using(resources={"gpu_box": 1}, retry_backoff_seconds=0).enqueue(2, 5)
    row = lambda: TaskExecution.objects.get(pk=result.id)  # noqa: E731

    first = worker_on(ray_cluster.dashboard_url, runtime_env)
    first.lease.acquire()
    spin(first, lambda: row().ray_status == "PENDING", 60, "the job to wait for gpu_box")
    assert row().state == "RUNNING"
    first.lease.release()  # that worker goes away; its job can never start on that cluster

    richer = LocalRayCluster()
    richer.start(num_cpus=2, resources={"gpu_box": 1})
    try:
        second = worker_on(richer.dashboard_url, runtime_env)
        second.lease.acquire()
        spin(second, lambda: row().state == "SUCCESSFUL", 120, "the task to finish")
        second.lease.release()
    finally:
        richer.stop()

    done = default_task_backend.get_result(result.id)
    assert (done.status, done.return_value, done.attempts) == (TaskResultStatus.SUCCESSFUL, 7, 2)
    assert done.errors[0].exception_class_path == "django_ray.worker.recovery.WorkerLost"
