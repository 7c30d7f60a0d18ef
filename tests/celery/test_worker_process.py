"""Real ``celery worker`` processes: selecting the pool, state rows, prefork parity, shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import chain, chord, group
from celery.result import GroupResult

from tests.celery import tasks
from tests.celery.app import REDIS
from tests.celery.conftest import CELERY, ROOT, WorkerProcess, inspect, launch_worker, wait_until

pytestmark = [pytest.mark.ray]
TIMEOUT = 30
POOL = "celery_bridge.pool:RayPool"


@pytest.fixture(scope="module")
def ray_worker(
    ray_cluster: Any, django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[WorkerProcess]:
    """``celery worker -P django_ray -c 2`` that records execution rows."""
    log = tmp_path_factory.mktemp("logs") / "django_ray.log"
    worker = launch_worker(
        ray_cluster, log, "-P", "django_ray", "-c", "2", env={"CELERY_BRIDGE_TEST_RECORD": "1"}
    )
    yield worker
    worker.stop()
    from django.db import OperationalError

    from django_ray.models import TaskExecution

    # Without a selected django_db test there is no test database (and no rows).
    with django_db_blocker.unblock(), contextlib.suppress(OperationalError):
        TaskExecution.objects.filter(origin="celery").delete()


def pool_of(worker: WorkerProcess) -> dict[str, Any]:
    stats = inspect(worker.name).stats()
    assert stats, f"no stats from {worker.name}:\n{worker.output()[-3000:]}"
    pool: dict[str, Any] = stats[worker.name]["pool"]
    return pool


def test_celery_worker_help_lists_the_django_ray_pool():
    help_text = subprocess.run(
        [CELERY, "worker", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout

    assert "|custom|django_ray]" in help_text


def test_the_check_command_says_how_ray_workers_build_the_app():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run(
        [CELERY, "-A", "tests.celery.app", "django_ray"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    assert "app:         tests.celery.app, rebuilt on Ray from its settings" in out
    assert "task modules: tests.celery.tasks" in out


def test_dash_p_django_ray_runs_tasks_on_ray(ray_worker, ray_cluster):
    assert tasks.add.delay(20, 22).get(timeout=TIMEOUT) == 42
    pool = pool_of(ray_worker)
    assert (pool["implementation"], pool["ray-address"]) == (POOL, ray_cluster.address)
    assert pool["max-concurrency"] == 2


def outcome(result: Any) -> tuple[Any, Any]:
    try:
        value = result.get(timeout=TIMEOUT)
    except Exception as exc:
        value = f"{type(exc).__name__}: {exc}"
    if isinstance(result, GroupResult):
        return [child.state for child in result.results], value
    return result.state, value


def request_outcome(result: Any) -> tuple[Any, Any]:
    """What the task saw of its request, less what differs between workers."""
    state, value = outcome(result)
    return state, {**value, "id": value["id"] == result.id, "hostname": None, "pid": None}


def run_suite() -> dict[str, tuple[Any, Any]]:
    """One small workload, as states and values comparable across pools."""
    return {
        "add": outcome(tasks.add.delay(2, 3)),
        "failure": outcome(tasks.fail.delay("boom")),
        "retry": outcome(tasks.retry_once.delay()),
        "request": request_outcome(tasks.where.apply_async((1,), {"k": 2})),
        "chain": outcome(chain(tasks.add.s(1, 2), tasks.add.s(3)).delay()),
        "group": outcome(group(tasks.add.s(i, i) for i in range(3)).delay()),
        "chord": outcome(chord((tasks.add.s(i, i) for i in range(3)), tasks.tsum.s()).delay()),
        "soft limit": outcome(tasks.soft_limited.delay()),
        "expired": outcome(tasks.add.apply_async((1, 1), expires=-1)),
    }


def test_prefork_and_django_ray_give_the_same_results_and_states(ray_worker, start_worker_process):
    on_ray = run_suite()
    # The prefork worker alone takes the next run from the shared queue.
    tasks.app.control.cancel_consumer(
        tasks.app.conf.task_default_queue, destination=[ray_worker.name], reply=True
    )
    try:
        prefork = start_worker_process("-P", "prefork", "-c", "2")
        on_prefork = run_suite()
        prefork.stop()
    finally:
        tasks.app.control.add_consumer(
            tasks.app.conf.task_default_queue, destination=[ray_worker.name], reply=True
        )

    assert on_ray == on_prefork
    assert on_ray["failure"] == ("FAILURE", "ValueError: boom")
    assert on_ray["chord"] == ("SUCCESS", 6)


@pytest.mark.django_db(transaction=True)
def test_each_run_has_a_row_in_django_rays_execution_table(ray_worker):
    from django_ray.models import TaskExecution

    ok, bad, retried = tasks.add.delay(1, 2), tasks.fail.delay("row"), tasks.retry_once.delay()
    [outcome(result) for result in (ok, bad, retried)]

    def row(result: Any, state: str) -> TaskExecution | None:
        return TaskExecution.objects.filter(celery_task_id=result.id, state=state).first()

    ok_row = wait_until(lambda: row(ok, "SUCCESSFUL"))
    bad_row = wait_until(lambda: row(bad, "FAILED"))
    retried_row = wait_until(lambda: row(retried, "SUCCESSFUL"))
    assert (ok_row.origin, ok_row.task_path, ok_row.args, ok_row.kwargs, ok_row.attempt) == (
        "celery", "tests.celery.tasks.add", [1, 2], {}, 1,
    )  # fmt: skip
    assert (ok_row.runner, ok_row.worker, ok_row.queue_name) == (
        "ray_core", ray_worker.name, tasks.app.conf.task_default_queue,
    )  # fmt: skip
    assert len(ok_row.ray_handle) >= 32
    assert ok_row.started_at <= ok_row.finished_at
    [error] = bad_row.errors
    assert (error["exception_class_path"], error["message"]) == ("builtins.ValueError", "row")
    assert error["traceback"].rstrip().endswith("ValueError: row")
    assert retried_row.attempt == 2
    assert [e["exception_class_path"] for e in retried_row.errors] == ["celery.exceptions.Retry"]


def test_a_standalone_beat_schedule_runs_through_the_pool(ray_worker, tmp_path):
    ran = tmp_path / "beat"
    env = {**os.environ, "CELERY_BRIDGE_TEST_BEAT_FILE": str(ran)}
    schedule = str(tmp_path / "schedule")
    command = [CELERY, "-A", "tests.celery.app", "beat", "-s", schedule, "-l", "INFO"]
    with open(tmp_path / "beat.log", "wb") as log:
        beat = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        pids = wait_until(
            lambda: ran.exists() and len(lines := ran.read_text().split()) >= 2 and lines
        )
    finally:
        beat.terminate()
        beat.wait(30)

    assert str(ray_worker.process.pid) not in pids


def test_dash_p_custom_with_celery_custom_worker_pool(start_worker_process):
    worker = start_worker_process("-P", "custom", env={"CELERY_CUSTOM_WORKER_POOL": POOL})

    assert pool_of(worker)["implementation"] == POOL


def test_worker_pool_in_the_app_config(start_worker_process):
    worker = start_worker_process(env={"CELERY_BRIDGE_TEST_WORKER_POOL": POOL})

    assert pool_of(worker)["implementation"] == POOL


def test_the_pool_refuses_an_app_that_accepts_pickle(start_worker_process):
    # C_FORCE_ROOT: Celery's own refusal of pickle under root must not come first.
    env = {"CELERY_BRIDGE_TEST_ACCEPT": "json,pickle", "C_FORCE_ROOT": "1"}
    worker = start_worker_process("-P", "django_ray", env=env, wait=False)

    assert worker.process.wait(60) != 0
    output = worker.output()
    assert "The django_ray pool refuses to start: the Celery app accepts 'pickle'" in output
    assert "django_ray_allow_pickle = True" in output


def test_warm_shutdown_drains_so_no_ack_is_lost(start_worker_process, celery_namespace, tmp_path):
    worker = start_worker_process("-P", "django_ray")
    flag, pid_path = tmp_path / "go", tmp_path / "pid"
    result = tasks.wait_late.delay(str(flag), str(pid_path))
    wait_until(pid_path.exists)

    worker.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "Warm shutdown" in worker.output())
    flag.touch()

    assert worker.process.wait(TIMEOUT) == 0
    assert result.get(timeout=TIMEOUT) == "released"
    client = redis.Redis.from_url(REDIS)
    assert client.hlen(f"{celery_namespace}:unacked") == 0
    assert client.llen(f"{celery_namespace}:{celery_namespace}") == 0
    client.close()
