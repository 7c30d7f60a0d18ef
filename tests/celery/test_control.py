"""Acknowledgements, inspect and control under the django_ray pool (in-process worker, Redis)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis
from celery.exceptions import TaskRevokedError

from tests.celery import tasks
from tests.celery.app import REDIS
from tests.celery.conftest import inspect, process_alive, wait_until, written_pid

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("bridge_worker")]
TIMEOUT = 30


@pytest.fixture
def unacked(celery_namespace: str) -> Any:
    """How many messages the Redis transport holds as delivered but not acknowledged."""
    client = redis.Redis.from_url(REDIS)
    yield lambda: client.hlen(f"{celery_namespace}:unacked")
    client.close()


def active(worker: Any, task_id: str) -> dict[str, Any] | None:
    running = inspect(worker.hostname).active() or {}
    return next((r for r in running.get(worker.hostname, []) if r["id"] == task_id), None)


def test_by_default_the_message_is_acked_when_the_task_starts(bridge_worker, unacked, tmp_path):
    flag = tmp_path / "go"
    result = tasks.wait.delay(str(flag))

    request = wait_until(lambda: active(bridge_worker, result.id))
    assert request["acknowledged"] is True
    assert unacked() == 0
    flag.touch()
    assert result.get(timeout=TIMEOUT) == "released"


def test_acks_late_acks_only_after_the_task_finished_on_ray(bridge_worker, unacked, tmp_path):
    flag = tmp_path / "go"
    result = tasks.wait_late.delay(str(flag))

    request = wait_until(lambda: active(bridge_worker, result.id))
    assert request["acknowledged"] is False
    assert unacked() == 1
    flag.touch()
    assert result.get(timeout=TIMEOUT) == "released"
    wait_until(lambda: unacked() == 0)


def test_inspect_stats_shows_the_pool(bridge_worker, ray_cluster, tmp_path):
    # As prefork has one child per slot, the pool has one Ray worker process per slot.
    wait_until(lambda: len(pool_stats(bridge_worker)["processes"]) == 4, timeout=60)
    flag, pid_path = tmp_path / "go", tmp_path / "pid"
    result = tasks.wait.delay(str(flag), str(pid_path))
    wait_until(lambda: active(bridge_worker, result.id))
    ran_in = written_pid(pid_path)

    pool = pool_stats(bridge_worker)
    running = active(bridge_worker, result.id)
    flag.touch()
    result.get(timeout=TIMEOUT)

    assert pool["implementation"] == "celery_bridge.pool:RayPool"
    assert pool["ray-address"] == ray_cluster.address
    assert (pool["max-concurrency"], pool["in-flight"], len(pool["ray-tasks"])) == (4, 1, 1)
    assert all(process_alive(pid) and pid != os.getpid() for pid in pool["processes"])
    # inspect active names the Ray worker process that really runs the task.
    assert running["worker_pid"] == ran_in
    assert ran_in in pool["processes"]


def pool_stats(worker: Any) -> dict[str, Any]:
    return inspect(worker.hostname).stats()[worker.hostname]["pool"]


def test_pool_grow_and_shrink_change_the_limit(bridge_worker):
    control = tasks.app.control

    def limit() -> int:
        stats = inspect(bridge_worker.hostname).stats()[bridge_worker.hostname]
        return int(stats["pool"]["max-concurrency"])

    grown = control.pool_grow(2, destination=[bridge_worker.hostname], reply=True)
    assert grown == [{bridge_worker.hostname: {"ok": "pool will grow"}}]
    assert limit() == 6
    control.pool_shrink(2, destination=[bridge_worker.hostname], reply=True)
    assert limit() == 4


def test_revoke_with_terminate_stops_the_task_on_ray(bridge_worker, tmp_path):
    pid_path = tmp_path / "pid"
    result = tasks.wait.delay(str(tmp_path / "never"), str(pid_path))
    ray_pid = written_pid(pid_path)

    tasks.app.control.revoke(result.id, terminate=True)

    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert result.state == "REVOKED"
    wait_until(lambda: not process_alive(ray_pid), timeout=10)
