"""The ray_job runner where a cluster's job history is long: it asks after its own
jobs only, caps how many it runs, can delete the ones that ended, and reads a failed
job's log as a tail."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.tasks import TaskResultStatus, default_task_backend
from ray.job_submission import JobSubmissionClient
from ray.util.state import list_nodes

from django_ray.conf import get_settings
from django_ray.management.commands.django_ray_worker import _dispatcher
from django_ray.models import TaskExecution, WorkerLease
from django_ray.runtime.jobs import LOG_TAIL_LINES, RayJobDispatcher
from django_ray.worker.loop import Worker, WorkerOptions
from tests.faults.helpers import wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.django_db(transaction=True)]


def run_worker(ray_cluster, *extra: str) -> None:
    call_command(
        "django_ray_worker", "--ray-job", "--burst", "--address", ray_cluster.dashboard_url, *extra
    )


@pytest.fixture
def no_listing_nor_whole_logs(monkeypatch):
    """Listing every job, or downloading a whole log, fails the test."""

    def refuse(name):
        def refused(self, *args, **kwargs):
            raise AssertionError(f"JobSubmissionClient.{name}() was called")

        return refused

    monkeypatch.setattr(JobSubmissionClient, "list_jobs", refuse("list_jobs"))
    monkeypatch.setattr(JobSubmissionClient, "get_job_logs", refuse("get_job_logs"))


def test_jobs_are_polled_by_id_and_a_failed_jobs_log_is_read_as_a_tail(
    ray_cluster, jobs_settings, no_listing_nor_whole_logs
):
    ok = tasks.add.enqueue(2, 3)
    crash = tasks.shout_then_crash.enqueue(5000)

    run_worker(ray_cluster, "--concurrency", "2")

    assert default_task_backend.get_result(ok.id).return_value == 5
    failed = TaskExecution.objects.get(pk=crash.id)
    assert failed.state == TaskResultStatus.FAILED
    (error,) = failed.errors
    assert error["exception_class_path"] == "django_ray.runtime.jobs.RayJobFailed"
    tail = error["traceback"].splitlines()
    assert tail[0] == "Tail of the job's logs:"
    shown = [line for line in tail if line.startswith("line ")]
    # The last lines, in order, and no more than the tail asks for.
    assert shown and shown[-1] == "line 4999 of 5000", error["traceback"][:3000]
    assert 10 <= len(shown) <= LOG_TAIL_LINES
    assert "line 0 of 5000" not in tail
    # The node each job's driver ran on, as Ray says, is on its row and in the error.
    nodes = {node.node_id for node in list_nodes(address=ray_cluster.address)}
    assert TaskExecution.objects.get(pk=ok.id).ray_node in nodes
    assert failed.ray_node in nodes and error["node"] == failed.ray_node


def test_finished_jobs_are_deleted_from_rays_history_when_asked(
    ray_cluster, jobs_settings, monkeypatch
):
    monkeypatch.setattr(RayJobDispatcher, "DELETE_AFTER_SECONDS", 3.0)
    jobs_settings.DJANGO_RAY = {**jobs_settings.DJANGO_RAY, "RAY_JOB_DELETE_FINISHED": True}
    ok = tasks.add.enqueue(1, 1)
    crash = tasks.shout_then_crash.enqueue(3)
    dispatcher = _dispatcher("ray_job", ray_cluster.dashboard_url, get_settings())
    worker = Worker(
        WorkerOptions(queues=("default",), concurrency=2, heartbeat_seconds=5, lease_seconds=30),
        dispatcher,
    )
    assert worker.tick().claimed == 2
    ids = [ok.id, crash.id]
    client = JobSubmissionClient(ray_cluster.dashboard_url)

    def deleted() -> bool:
        worker.collect(0.3)
        rows = TaskExecution.objects.filter(pk__in=ids, finished_at__isnull=False)
        return len(rows) == 2 and all(_gone(client, row.ray_handle) for row in rows)

    wait_for(deleted, 60, "both jobs to end, be recorded and be deleted")
    assert default_task_backend.get_result(ok.id).return_value == 2
    failed = TaskExecution.objects.get(pk=crash.id)
    assert failed.state == TaskResultStatus.FAILED
    assert "line 2 of 3" in failed.errors[0]["traceback"]  # read before the job was deleted
    time.sleep(2)  # and Ray's job manager did not write them back
    assert all(_gone(client, row.ray_handle) for row in TaskExecution.objects.filter(pk__in=ids))


def _gone(client: JobSubmissionClient, sid: str) -> bool:
    try:
        client.get_job_info(sid)
    except RuntimeError as exc:
        assert "does not exist" in str(exc)
        return True
    return False


def test_a_worker_runs_no_more_jobs_at_once_than_the_cap(ray_cluster, jobs_settings, caplog):
    jobs_settings.DJANGO_RAY = {**jobs_settings.DJANGO_RAY, "RAY_JOB_MAX_RUNNING": 2}
    results = [tasks.add.enqueue(n, n) for n in range(4)]
    most = [0]
    concurrency: list[int] = []

    def worker() -> None:
        try:
            run_worker(ray_cluster, "--concurrency", "50")
        finally:
            connection.close()

    thread = threading.Thread(target=worker, daemon=True)
    with caplog.at_level("WARNING", logger="django_ray.worker"):
        thread.start()
        while thread.is_alive():
            most[0] = max(most[0], TaskExecution.objects.filter(state="RUNNING").count())
            concurrency += WorkerLease.objects.values_list("concurrency", flat=True)
            time.sleep(0.05)
        thread.join()

    assert [default_task_backend.get_result(r.id).return_value for r in results] == [0, 2, 4, 6]
    assert most[0] == 2
    assert set(concurrency) == {2}
    assert "Running at most 2 Ray jobs at once (DJANGO_RAY['RAY_JOB_MAX_RUNNING'])" in caplog.text
