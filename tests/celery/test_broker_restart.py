"""The worker through a broker restart: a private Redis, stopped and started mid-task."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.celery.app import make_app
from tests.celery.conftest import launch_worker, wait_until

pytestmark = [pytest.mark.ray]
TIMEOUT = 30


class PrivateRedis:
    """``redis-server`` on a free loopback port, persisting every write to its own dir."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--dir", str(self.directory), "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always"]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the server owns it
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: self._pings(client), timeout=10)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_acks_late_tasks_survive_a_broker_restart(
    ray_cluster: Any, django_db_setup: None, private_redis: PrivateRedis, tmp_path: Path
):
    env = {
        "CELERY_BRIDGE_TEST_BROKER": private_redis.url,
        "CELERY_BRIDGE_TEST_VISIBILITY_TIMEOUT": "3",
    }
    client = make_app("tests.celery.restart_client", {**os.environ, **env})
    # -c 1: with Celery 5.7 / kombu 5.7 any pool with concurrency > 1 (prefork too)
    # dies restoring unacked messages when the Redis broker goes away (an upstream bug).
    worker = launch_worker(
        ray_cluster, tmp_path / "worker.log", "-P", "django_ray", "-c", "1", env=env, app=client
    )
    try:
        markers, flag = tmp_path / "runs", tmp_path / "go"
        signature = client.signature("tests.celery.tasks.count_then_wait")
        result = signature.delay(str(markers), str(flag))
        wait_until(lambda: markers.exists() and any(markers.iterdir()))

        private_redis.stop()
        flag.touch()  # the task finishes on Ray while the broker is down
        private_redis.start()

        assert result.get(timeout=TIMEOUT) in (0, 1)
        broker = redis.Redis.from_url(private_redis.url)
        namespace = client.conf.task_default_queue

        def drained() -> bool:
            queued = broker.llen(f"{namespace}:{namespace}")
            return queued == 0 and broker.hlen(f"{namespace}:unacked") == 0

        wait_until(drained, timeout=TIMEOUT)
        broker.close()
        assert worker.process.poll() is None
        # A new connection: the client's pooled ones died with the broker. The worker
        # answers once its control consumer is back on the broker (seconds, on a busy CI).
        with client.connection_for_write() as connection:
            wait_until(
                lambda: client.control.ping([worker.name], timeout=2, connection=connection),
                timeout=TIMEOUT,
            )
    finally:
        worker.stop()
