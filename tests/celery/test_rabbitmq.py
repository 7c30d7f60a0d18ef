"""The main semantics again with RabbitMQ as the broker (results stay in Redis)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, chain, chord, group
from celery.exceptions import TaskRevokedError

from tests.celery.app import make_app
from tests.celery.conftest import (
    AMQP,
    WorkerProcess,
    launch_worker,
    process_alive,
    wait_until,
    written_pid,
)

pytestmark = [pytest.mark.ray]
TIMEOUT = 30
AMQP_ENV = {"CELERY_BRIDGE_TEST_BROKER": AMQP}


@pytest.fixture(scope="module")
def client() -> Iterator[Celery]:
    """An app that sends to the RabbitMQ workers by task name."""
    app = make_app("tests.celery.rabbitmq_client", {**os.environ, **AMQP_ENV})
    yield app
    namespace = app.conf.task_default_queue
    with app.connection() as connection:
        channel = connection.default_channel
        with contextlib.suppress(Exception):
            channel.queue_delete(namespace)
        for exchange in (namespace, f"{namespace}.pidbox", f"reply.{namespace}.pidbox"):
            with contextlib.suppress(Exception):
                channel.exchange_delete(exchange)


@pytest.fixture(scope="module")
def amqp_worker(
    ray_cluster: Any, django_db_setup: None, client: Celery, tmp_path_factory: Any
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("logs") / "rabbitmq.log"
    worker = launch_worker(
        ray_cluster, log, "-P", "django_ray", "-c", "2", env=AMQP_ENV, app=client
    )
    yield worker
    worker.stop()


def task(client: Celery, name: str, *args: Any) -> Any:
    return client.signature(f"tests.celery.tasks.{name}", args=args)


def test_results_failures_and_retries(amqp_worker, client):
    assert task(client, "add", 2, 3).delay().get(timeout=TIMEOUT) == 5
    failed = task(client, "fail", "over amqp").delay()
    with pytest.raises(ValueError, match=r"^over amqp$"):
        failed.get(timeout=TIMEOUT)
    assert failed.traceback.rstrip().endswith("ValueError: over amqp")
    assert task(client, "retry_once").delay().get(timeout=TIMEOUT) == 1


def test_canvas(amqp_worker, client):
    then_add_3 = client.signature("tests.celery.tasks.add", args=(3,))
    pairs = [task(client, "add", i, i) for i in range(3)]

    assert chain(task(client, "add", 1, 2), then_add_3).delay().get(timeout=TIMEOUT) == 6
    assert group(pairs).delay().get(timeout=TIMEOUT) == [0, 2, 4]
    assert chord(pairs, task(client, "tsum")).delay().get(timeout=TIMEOUT) == 6


def test_revoke_with_terminate(amqp_worker, client, tmp_path):
    pid_path = tmp_path / "pid"
    result = task(client, "wait", str(tmp_path / "never"), str(pid_path)).delay()
    ray_pid = written_pid(pid_path)

    client.control.revoke(result.id, terminate=True)

    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    wait_until(lambda: not process_alive(ray_pid), timeout=10)


def test_acks_late_is_acked_after_the_run_even_through_a_warm_shutdown(
    ray_cluster, django_db_setup, client, tmp_path
):
    # A queue of its own, so that the module's worker does not take the task.
    queue = f"{client.conf.task_default_queue}.late"
    worker = launch_worker(
        ray_cluster, tmp_path / "late.log", "-P", "django_ray", "-Q", queue,
        env=AMQP_ENV, app=client,
    )  # fmt: skip
    try:
        flag, pid_path = tmp_path / "go", tmp_path / "pid"
        result = task(client, "wait_late", str(flag), str(pid_path)).apply_async(queue=queue)
        wait_until(pid_path.exists)
        running = client.control.inspect(destination=[worker.name], timeout=5).active()
        assert [r["acknowledged"] for r in running[worker.name]] == [False]

        worker.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "Warm shutdown" in worker.output())
        flag.touch()
        assert worker.process.wait(TIMEOUT) == 0
    finally:
        worker.stop()

    assert result.get(timeout=TIMEOUT) == "released"
    # An unacked message would be back in the queue once the worker disconnected.
    with client.connection() as connection:
        channel = connection.default_channel
        _, ready, _ = channel.queue_declare(queue, passive=True)
        channel.queue_delete(queue)
    assert ready == 0
