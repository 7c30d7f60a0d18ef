"""One row is one blast radius: rows whose task modules broke after they were enqueued.

A deploy can break a task module in many ways: it raises at import (a missing
setting), it no longer parses, or it no longer declares the task. Rows of such
modules are mixed with good rows and run by the real worker on the session's
Ray cluster, in burst and in continuous mode, and recovered by a second worker
from a worker that died holding them. Every good row succeeds, every bad one is
FAILED with its cause, and no worker stops.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.tasks import default_task_backend
from django.utils.module_loading import import_string

from django_ray.conf import get_settings
from django_ray.lifecycle import attempts
from django_ray.models import TaskExecution
from django_ray.runtime.core import RayCoreDispatcher
from django_ray.worker.loop import Worker, WorkerOptions
from tests.conftest import ROOT
from tests.faults.helpers import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.django_db(transaction=True)]

TASK = "from django.tasks import task\n\n\n@task\ndef work(n):\n    return n * 2\n"
BROKEN = {
    "raises": ('raise RuntimeError("DEPLOY_SETTING is not set")\n', "RuntimeError: DEPLOY_SETTING"),
    "syntax": ("def work(n:\n    return n\n", "SyntaxError"),
    "gone": ("def renamed(n):\n    return n\n", 'does not define a "work"'),
}


class Deploy:
    """A package of task modules outside the tree, on the path here and on Ray."""

    def __init__(self, root: Path) -> None:
        self.name = f"deploy_{uuid.uuid4().hex[:8]}"
        self.root = root
        self.package = root / self.name
        self.package.mkdir(parents=True)
        (self.package / "__init__.py").write_text("")
        for module in ("good", *BROKEN):
            (self.package / f"{module}.py").write_text(TASK)

    def enqueue(self, module: str, n: int) -> str:
        return str(import_string(f"{self.name}.{module}.work").enqueue(n).id)

    def break_modules(self) -> None:
        """What the next deploy ships: every module but ``good`` is broken."""
        for module, (source, _) in BROKEN.items():
            (self.package / f"{module}.py").write_text(source)
            sys.modules.pop(f"{self.name}.{module}", None)
        shutil.rmtree(self.package / "__pycache__", ignore_errors=True)
        importlib.invalidate_caches()


@pytest.fixture
def deploy(tmp_path, settings, ray_connection) -> Iterator[Deploy]:
    deploy = Deploy(tmp_path / "site")
    sys.path.insert(0, str(deploy.root))
    env_vars = {"PYTHONPATH": f"{ROOT}:{deploy.root}"}
    settings.DJANGO_RAY = {
        **settings.DJANGO_RAY,
        "RAY_RUNTIME_ENV": {"env_vars": env_vars},
        "RETRY_BACKOFF_SECONDS": 0,  # a lost attempt is due again at once
    }
    try:
        yield deploy
    finally:
        sys.path.remove(str(deploy.root))
        for name in [name for name in sys.modules if name.startswith(deploy.name)]:
            del sys.modules[name]


def enqueue_mix(deploy: Deploy) -> tuple[dict[str, int], dict[str, str]]:
    """Six good rows (id -> expected value) and two rows of each broken module (id -> cause)."""
    good = {deploy.enqueue("good", n): n * 2 for n in range(6)}
    bad = {
        deploy.enqueue(module, n): cause for module, (_, cause) in BROKEN.items() for n in (1, 2)
    }
    return good, bad


def assert_each_row_ended_alone(good: dict[str, int], bad: dict[str, str]) -> None:
    for result_id, value in good.items():
        result = default_task_backend.get_result(result_id)
        assert (result.status, result.return_value) == ("SUCCESSFUL", value)
    for result_id, cause in bad.items():
        row = TaskExecution.objects.get(pk=result_id)
        error = row.errors[-1]
        assert (row.state, error["exception_class_path"]) == (
            "FAILED",
            "django_ray.registry.UnregisteredTask",
        )
        assert cause in error["message"], error["message"]


def run_burst(ray_cluster) -> None:
    call_command("django_ray_worker", "--ray-core", "--burst", "--address", ray_cluster.address)


def test_bad_rows_fail_alone_in_burst_mode(deploy, ray_cluster):
    good, bad = enqueue_mix(deploy)
    deploy.break_modules()

    run_burst(ray_cluster)  # returns: the worker ran everything and stopped on its own

    assert_each_row_ended_alone(good, bad)
    assert set(TaskExecution.objects.filter(pk__in=bad).values_list("attempt", flat=True)) == {1}


def test_bad_rows_fail_alone_in_continuous_mode(deploy, ray_cluster):
    settings = get_settings()
    worker = Worker(
        WorkerOptions(
            queues=("default",),
            concurrency=4,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            lease_seconds=settings.worker_lease_seconds,
            ray_address=ray_cluster.address,
            idle_wait_seconds=0.2,
        ),
        RayCoreDispatcher(settings.ray_runtime_env, address=ray_cluster.address),
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        good, bad = enqueue_mix(deploy)
        deploy.break_modules()
        wait_for(
            lambda: TaskExecution.objects.filter(pk__in=[*good, *bad]).finished().count() == 12,
            120,
            "every row to end",
        )
        assert thread.is_alive()  # still serving
        more = deploy.enqueue("good", 50)
        wait_for(
            lambda: TaskExecution.objects.filter(pk=more, state="SUCCESSFUL").exists(),
            60,
            "a row enqueued afterwards to run",
        )
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert_each_row_ended_alone(good, bad)


def test_a_second_workers_recovery_pass_survives_the_bad_rows(deploy, ray_cluster):
    good, bad = enqueue_mix(deploy)
    # A worker claimed them all, then died: no lease, its Ray Core tasks gone with it.
    claimed = attempts.claim(
        20, worker_id="died-holding-them", queues=["default"], runner="ray_core"
    )
    assert len(claimed) == 12
    deploy.break_modules()

    run_burst(ray_cluster)

    assert_each_row_ended_alone(good, bad)
    for row in TaskExecution.objects.filter(pk__in=[*good, *bad]):
        assert row.lost_attempts == 1
        assert row.errors[0]["exception_class_path"] == "django_ray.worker.recovery.WorkerLost"
