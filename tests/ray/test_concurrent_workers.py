"""Two worker processes on one PostgreSQL database: every task runs exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from django_ray.models import TaskExecution, WorkerLease
from tests.ray_cluster import ray_subprocess_env
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def start_worker(ray_cluster, log: Path) -> subprocess.Popen:
    env = ray_subprocess_env(ray_cluster)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["DJANGO_RAY_TEST_PG_NAME"] = connection.settings_dict["NAME"]
    return subprocess.Popen(
        [sys.executable, "-m", "django", "django_ray_worker", "--ray-core", "--concurrency", "4"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_two_workers_never_run_the_same_task_twice(ray_cluster, tmp_path):
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [start_worker(ray_cluster, log) for log in logs]
    try:
        wait_for(lambda: WorkerLease.objects.alive().count() == 2, 120, "both workers' leases")
        tokens = [f"t{i:03d}" for i in range(200)]
        for token in tokens:
            tasks.mark_execution.enqueue(str(tmp_path / "marks"), token, 0.02)
        wait_for(
            lambda: TaskExecution.objects.finished().count() == 200, 180, "all 200 tasks to finish"
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exit_codes = [worker.wait(timeout=60) for worker in workers]

    output = "\n".join(log.read_text() for log in logs)
    assert exit_codes == [0, 0], output
    rows = list(TaskExecution.objects.all())
    assert Counter(row.state for row in rows) == {"SUCCESSFUL": 200}
    assert Counter(row.attempt for row in rows) == {1: 200}
    runs = {token: len(os.listdir(tmp_path / "marks" / token)) for token in tokens}
    assert runs == dict.fromkeys(tokens, 1)
    per_worker = Counter(row.worker for row in rows)
    assert len(per_worker) == 2, f"one worker ran everything: {per_worker}"
    assert WorkerLease.objects.alive().count() == 0
