"""The worker command end to end: real database, real local Ray cluster."""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter

import pytest
from django.core.management import call_command
from django.tasks import TaskResultStatus, default_task_backend

from django_ray.models import TaskExecution
from django_ray.signing import sign
from tests.celery.conftest import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.django_db]


def run_worker(ray_cluster, *extra: str) -> None:
    call_command(
        "django_ray_worker", "--ray-core", "--burst", "--address", ray_cluster.address, *extra
    )


def test_one_burst_runs_a_hundred_tasks_across_queues_and_priorities(ray_cluster, ray_connection):
    expected = {}
    for i in range(25):
        expected[tasks.add.enqueue(i, 1).id] = i + 1
        expected[tasks.add.using(priority=10).enqueue(i, 2).id] = i + 2
        expected[tasks.multiply.enqueue(i, 3).id] = i * 3
        expected[tasks.multiply.using(priority=10).enqueue(i, 4).id] = i * 4

    run_worker(ray_cluster, "--concurrency", "16")

    results = {rid: default_task_backend.get_result(rid) for rid in expected}
    assert {rid: r.status for rid, r in results.items()} == dict.fromkeys(
        expected, TaskResultStatus.SUCCESSFUL
    )
    assert {rid: r.return_value for rid, r in results.items()} == expected
    assert Counter(r.attempts for r in results.values()) == {1: 100}
    assert TaskExecution.objects.filter(queue_name="other", state="SUCCESSFUL").count() == 50


def test_short_tasks_come_to_share_round_trips_to_warm_actors(ray_cluster, ray_connection):
    from django_ray.runtime.core import RayCoreDispatcher
    from django_ray.worker.loop import Worker, WorkerOptions

    dispatcher = RayCoreDispatcher()
    options = WorkerOptions(
        queues=("default",), concurrency=50, heartbeat_seconds=15, lease_seconds=60, burst=True
    )
    first = [tasks.add.enqueue(i, i).id for i in range(100)]
    Worker(options, dispatcher).run()  # add's attempts run alone: its kind is not known yet
    actors = dispatcher._calls.actors
    assert actors is not None
    wait_until(lambda: len(actors.pids()) == actors.size > 0, timeout=60, interval=0.1)
    expected = {tasks.add.enqueue(i, i).id: 2 * i for i in range(300)}

    Worker(options, dispatcher).run()

    results = {rid: default_task_backend.get_result(rid) for rid in [*first, *expected]}
    assert {rid: results[rid].return_value for rid in expected} == expected
    assert {r.status for r in results.values()} == {TaskResultStatus.SUCCESSFUL}
    rows = TaskExecution.objects.filter(pk__in=list(expected))
    assert set(rows.values_list("attempt", flat=True)) == {1}
    per_call = Counter(rows.values_list("ray_handle", flat=True))
    assert "" not in per_call and max(per_call.values()) > 1  # several rows per Ray call
    firsts = Counter(
        TaskExecution.objects.filter(pk__in=first).values_list("ray_handle", flat=True)
    )
    assert max(firsts.values()) == 1
    dispatcher.close()


def test_tasks_run_in_ray_worker_processes(ray_cluster, ray_connection):
    result = tasks.where_am_i.enqueue()

    run_worker(ray_cluster)

    value = default_task_backend.get_result(result.id).return_value
    assert value["pid"] != os.getpid()
    assert value["ray_task_id"] == TaskExecution.objects.get(pk=result.id).ray_handle


def test_sync_and_async_tasks_and_a_failure(ray_cluster, ray_connection):
    sync_result = tasks.add.enqueue(20, 22)
    async_result = tasks.async_add.enqueue(1, 2)
    failure = tasks.fail.enqueue("no such thing")

    run_worker(ray_cluster)

    assert default_task_backend.get_result(sync_result.id).return_value == 42
    assert default_task_backend.get_result(async_result.id).return_value == 3
    failed = default_task_backend.get_result(failure.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "builtins.ValueError"
    assert failed.errors[0].traceback.rstrip().endswith("ValueError: no such thing")


def test_a_row_naming_os_system_fails_on_ray_and_executes_nothing(
    ray_cluster, ray_connection, tmp_path
):
    target = tmp_path / "pwned"
    # Signed as enqueue() would sign it: the registry still refuses what is no Task.
    row = TaskExecution(task_path="os.system", args=[f"touch {target}"])
    row.signature = sign(row)
    row.save()

    run_worker(ray_cluster)

    row.refresh_from_db()
    assert row.state == "FAILED"
    assert row.errors[0]["exception_class_path"] == "django_ray.registry.UnregisteredTask"
    assert not target.exists()


def test_the_worker_logs_its_start_and_each_outcome(ray_cluster, ray_connection, caplog):
    ok = tasks.add.enqueue(1, 1)
    bad = tasks.fail.enqueue("nope")

    with caplog.at_level(logging.INFO, logger="django_ray"):
        run_worker(ray_cluster, "--queue", "default", "--concurrency", "3")

    lines = [r.getMessage() for r in caplog.records if r.name == "django_ray.worker"]
    # Where the start went (this test's process began long before the command).
    assert re.fullmatch(
        r"Ready [\d.]+ s after the process started: Python and Django [\d.]+ s, Ray [\d.]+ s",
        lines.pop(0),
    )
    assert lines[0].startswith("django-ray worker ")
    assert lines[0].endswith(
        f"started: queues=default runner=ray_core concurrency=3 ray={ray_cluster.address}"
    )
    outcome_lines = sorted(line for line in lines if line.startswith("Task "))
    assert len(outcome_lines) == 2
    assert outcome_lines[0].startswith(f"Task tests.testapp.tasks.add [{ok.id}] SUCCESSFUL in ")
    assert outcome_lines[1].startswith(f"Task tests.testapp.tasks.fail [{bad.id}] FAILED in ")
    assert outcome_lines[1].endswith("(attempt 1): builtins.ValueError: nope")


def test_a_dead_ray_worker_is_a_lost_attempt_retried_by_policy_not_by_ray(
    ray_cluster, ray_connection, tmp_path
):
    result = tasks.crash_worker.enqueue(str(tmp_path))  # max_attempts=2

    run_worker(ray_cluster)

    row = TaskExecution.objects.get(pk=result.id)
    assert (row.state, row.attempt, row.lost_attempts) == ("FAILED", 2, 2)
    assert [e["exception_class_path"] for e in row.errors] == [
        "ray.exceptions.WorkerCrashedError"
    ] * 2
    assert len(list((tmp_path / "crash").iterdir())) == 2


def test_task_options_reach_ray(ray_cluster, ray_connection, settings):
    settings.DJANGO_RAY = {
        **settings.DJANGO_RAY,
        "RAY_RUNTIME_ENV": {"env_vars": {"DJANGO_RAY_GLOBAL": "global", "DJANGO_RAY_PROBE": "g"}},
    }
    result = tasks.ray_view.enqueue()

    run_worker(ray_cluster)

    assert default_task_backend.get_result(result.id).return_value == {
        "resources": {"CPU": 2.0, "slot": 1.0},
        "probe": "task",
        "global": "global",
    }


def test_a_running_attempt_shows_its_ray_handle_and_a_quick_one_gets_it_with_its_outcome(
    ray_cluster, ray_connection, tmp_path
):
    from django_ray.runtime.core import RayCoreDispatcher
    from django_ray.worker.loop import HANDLE_WRITE_SECONDS, Worker, WorkerOptions

    slow = tasks.started_then_sleep.enqueue(str(tmp_path), "slow", 30)
    quick = tasks.where_am_i.enqueue()
    dispatcher = RayCoreDispatcher()
    worker = Worker(
        WorkerOptions(queues=("default",), concurrency=2, heartbeat_seconds=5, lease_seconds=30),
        dispatcher,
    )
    assert worker.tick().claimed == 2
    try:
        deadline = time.monotonic() + 60
        while TaskExecution.objects.get(pk=quick.id).state != "SUCCESSFUL":
            assert time.monotonic() < deadline, "the quick task did not finish"
            worker.collect(0.2)
        value = default_task_backend.get_result(quick.id).return_value
        assert TaskExecution.objects.get(pk=quick.id).ray_handle == value["ray_task_id"]

        time.sleep(HANDLE_WRITE_SECONDS)
        worker.tick()
        row = TaskExecution.objects.get(pk=slow.id)
        assert row.state == "RUNNING"
        assert len(row.ray_handle) >= 32  # a Ray task id, readable while it runs
    finally:
        dispatcher.cancel(slow.id)
        worker.shutdown(finish=False)
