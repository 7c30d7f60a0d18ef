"""Prometheus metrics: fed by the worker's signals, queue depth read when scraped."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.utils import timezone

from django_ray import metrics, queue_depth
from django_ray.models import TaskExecution
from django_ray.runtime.job import Outcome
from django_ray.signals import execution_finished, executions_claimed
from django_ray.testing import drain
from tests.ops.conftest import samples, value
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.ops.urls")]

ADD = "tests.testapp.tasks.add"
MULTIPLY = "tests.testapp.tasks.multiply"
FAIL_UNTIL = "tests.testapp.tasks.fail_until"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def scrape(client) -> dict:
    response = client.get("/metrics/")
    assert response.status_code == 200
    return samples(response.content.decode())


def running(task_path: str, **fields) -> TaskExecution:
    values = {"state": "RUNNING", "attempt": 1, "worker": "w-1", **fields}
    return TaskExecution.objects.create(task_path=task_path, **values)


def finish(row: TaskExecution, **fields) -> None:
    for name, new in fields.items():
        setattr(row, name, new)
    row.save()


def outcome(row: TaskExecution, **fields) -> Outcome:
    return Outcome(execution_id=str(row.pk), attempt=row.attempt, **fields)


def test_signals_feed_counters_histograms_and_in_flight(client, fresh_metrics):
    t0 = timezone.now() - timedelta(minutes=5)
    add = running(ADD, enqueued_at=t0, last_attempted_at=t0 + timedelta(seconds=2))
    # Backed off until t0: its wait counts from then, not from its enqueue.
    multiply = running(
        MULTIPLY,
        queue_name="other",
        attempt=2,
        enqueued_at=t0 - timedelta(seconds=100),
        run_after=t0,
        last_attempted_at=t0 + timedelta(milliseconds=500),
    )
    two_hours_ago = timezone.now() - timedelta(hours=2)
    retried = running(
        FAIL_UNTIL,
        worker="w-2",
        enqueued_at=two_hours_ago - timedelta(hours=1),
        last_attempted_at=two_hours_ago,
    )

    executions_claimed.send(TaskExecution, executions=[add, multiply], worker_id="w-1")
    executions_claimed.send(TaskExecution, executions=[retried], worker_id="w-2")
    claimed = scrape(client)

    assert value(claimed, "django_ray_attempts_claimed_total", queue="default") == 2
    assert value(claimed, "django_ray_attempts_claimed_total", queue="other") == 1
    assert value(claimed, "django_ray_in_flight", worker="w-1") == 2
    assert value(claimed, "django_ray_in_flight", worker="w-2") == 1
    assert value(claimed, "django_ray_queue_wait_seconds_sum", queue="other") == 0.5
    assert value(claimed, "django_ray_queue_wait_seconds_sum", queue="default") == 3602.0
    wait_bucket = "django_ray_queue_wait_seconds_bucket"
    assert value(claimed, wait_bucket, queue="default", le="1.0") == 0
    assert value(claimed, wait_bucket, queue="default", le="2.5") == 1
    assert value(claimed, wait_bucket, queue="default", le="3600.0") == 2

    finish(add, state="SUCCESSFUL", finished_at=add.last_attempted_at + timedelta(seconds=0.25))
    finish(multiply, state="FAILED", finished_at=multiply.last_attempted_at + timedelta(seconds=3))
    finish(retried, state="READY", worker="", run_after=timezone.now())
    execution_finished.send(TaskExecution, execution=add, outcome=outcome(add), worker_id="w-1")
    execution_finished.send(
        TaskExecution,
        execution=multiply,
        outcome=outcome(multiply, error={"message": "node died"}, lost=True),
        worker_id="w-1",
    )
    # A retried row no longer names its worker; the attempt still counts against w-2.
    execution_finished.send(
        TaskExecution,
        execution=retried,
        outcome=outcome(retried, error={"message": "try again"}),
        worker_id="",
    )
    found = scrape(client)

    assert value(found, "django_ray_tasks_finished_total", task=ADD, state="SUCCESSFUL") == 1
    assert value(found, "django_ray_tasks_finished_total", task=MULTIPLY, state="FAILED") == 1
    assert value(found, "django_ray_tasks_finished_total", task=FAIL_UNTIL, state="READY") is None
    assert value(found, "django_ray_attempts_retried_total", task=FAIL_UNTIL) == 1
    assert value(found, "django_ray_attempts_lost_total", task=MULTIPLY) == 1
    assert value(found, "django_ray_attempts_lost_total", task=ADD) is None
    assert value(found, "django_ray_attempt_run_seconds_sum", task=ADD) == 0.25
    assert value(found, "django_ray_attempt_run_seconds_sum", task=MULTIPLY) == 3.0
    # Still running two hours after its claim when its retry was recorded: past every bucket.
    assert value(found, "django_ray_attempt_run_seconds_count", task=FAIL_UNTIL) == 1
    bucket = "django_ray_attempt_run_seconds_bucket"
    assert value(found, bucket, task=FAIL_UNTIL, le="3600.0") == 0
    assert value(found, bucket, task=FAIL_UNTIL, le="+Inf") == 1
    assert value(found, "django_ray_in_flight", worker="w-1") == 0
    assert value(found, "django_ray_in_flight", worker="w-2") == 0


def test_the_real_worker_feeds_the_metrics(client, fresh_metrics, tmp_path):
    tasks.add.enqueue(2, 3)
    tasks.fail.enqueue("bad input")
    tasks.fail_until.enqueue(str(tmp_path), 2)

    worker = drain()
    found = scrape(client)

    assert value(found, "django_ray_attempts_claimed_total", queue="default") == 4
    assert value(found, "django_ray_tasks_finished_total", task=ADD, state="SUCCESSFUL") == 1
    fail = "tests.testapp.tasks.fail"
    assert value(found, "django_ray_tasks_finished_total", task=fail, state="FAILED") == 1
    assert value(found, "django_ray_tasks_finished_total", task=FAIL_UNTIL, state="SUCCESSFUL") == 1
    assert value(found, "django_ray_attempts_retried_total", task=FAIL_UNTIL) == 1
    assert value(found, "django_ray_attempt_run_seconds_count", task=FAIL_UNTIL) == 2
    assert value(found, "django_ray_queue_wait_seconds_count", queue="default") == 4
    assert value(found, "django_ray_in_flight", worker=worker.worker_id) == 0
    assert value(found, "django_ray_queue_depth", queue="default") == 0


def test_queue_depth_is_one_aggregate_query_over_ready_rows(
    client, fresh_metrics, settings, django_assert_num_queries
):
    settings.TASKS = {
        "default": {
            "BACKEND": "django_ray.backends.RayTaskBackend",
            "QUEUES": ["default", "other", "idle"],
        }
    }
    now = timezone.now()
    TaskExecution.objects.create(task_path=ADD)
    TaskExecution.objects.create(task_path=ADD, run_after=now - timedelta(seconds=1))
    TaskExecution.objects.create(task_path=ADD, run_after=now + timedelta(hours=1))
    TaskExecution.objects.create(task_path=MULTIPLY, queue_name="other")
    TaskExecution.objects.create(task_path=ADD, queue_name="unlisted")
    for state in ("RUNNING", "SUCCESSFUL", "FAILED"):
        TaskExecution.objects.create(task_path=ADD, state=state)

    with django_assert_num_queries(1):
        response = client.get("/metrics/")
    found = samples(response.content.decode())

    assert response["Content-Type"] == CONTENT_TYPE
    depths = {
        queue: (
            value(found, "django_ray_queue_depth", queue=queue),
            value(found, "django_ray_queue_due", queue=queue),
        )
        for queue in ("default", "other", "idle", "unlisted")
    }
    assert depths == {
        "default": (3, 2),
        "other": (1, 1),
        "idle": (0, 0),
        "unlisted": (1, 1),
    }
    assert value(found, "django_ray_queue_depth_up") == 1


def test_a_database_that_does_not_answer_is_reported_not_raised(client, fresh_metrics, monkeypatch):
    def unreachable(now=None):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(queue_depth, "queue_depths", unreachable)
    found = scrape(client)

    assert value(found, "django_ray_queue_depth_up") == 0
    assert not [
        name for name, _ in found if name in ("django_ray_queue_depth", "django_ray_queue_due")
    ]


def test_openmetrics_is_served_when_asked_for(client, fresh_metrics):
    response = client.get("/metrics/", headers={"Accept": "application/openmetrics-text"})

    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


def test_the_view_answers_only_reads(client, fresh_metrics):
    assert client.post("/metrics/").status_code == 405


def test_metrics_live_in_their_own_registry(fresh_metrics):
    from prometheus_client import REGISTRY

    names = {family.name for family in REGISTRY.collect()}
    assert not [name for name in names if name.startswith("django_ray")]


@pytest.mark.django_db(transaction=True)
def test_serve_metrics_on_a_free_loopback_port(fresh_metrics):
    TaskExecution.objects.create(task_path=ADD, queue_name="other")
    row = running(ADD, enqueued_at=timezone.now(), last_attempted_at=timezone.now())
    executions_claimed.send(TaskExecution, executions=[row], worker_id="w-port")

    server = metrics.serve_metrics(0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            found = samples(response.read().decode())
    finally:
        server.shutdown()
        server.server_close()

    assert value(found, "django_ray_queue_depth", queue="other") == 1
    assert value(found, "django_ray_queue_depth", queue="default") == 0
    assert value(found, "django_ray_attempts_claimed_total", queue="default") == 1
    assert value(found, "django_ray_in_flight", worker="w-port") == 1


def test_without_prometheus_client_nothing_breaks(client, fresh_metrics, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    metrics.prometheus.cache_clear()
    metrics.task_metrics.cache_clear()
    row = running(ADD, enqueued_at=timezone.now(), last_attempted_at=timezone.now())

    executions_claimed.send(TaskExecution, executions=[row], worker_id="w-1")
    execution_finished.send(TaskExecution, execution=row, outcome=outcome(row), worker_id="w-1")
    response = client.get("/metrics/")
    with pytest.raises(ImproperlyConfigured) as raised:
        metrics.serve_metrics(0)

    assert response.status_code == 503
    assert response.content.decode() == metrics.MISSING_LIBRARY
    assert str(raised.value) == metrics.MISSING_LIBRARY


def test_django_ray_does_not_import_prometheus_client_at_startup():
    code = (
        "import sys, django; django.setup(); import django_ray.metrics, django_ray.admin; "
        "print('prometheus_client' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr
