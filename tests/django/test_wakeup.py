"""An idle worker on PostgreSQL wakes when a task is enqueued, not at its next poll."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from django_ray.models import TaskExecution
from django_ray.testing import InProcessDispatcher
from django_ray.worker.loop import Worker, WorkerOptions
from tests.testapp import tasks

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def idle_worker(stop: threading.Event) -> threading.Thread:
    worker = Worker(
        WorkerOptions(
            queues=("default",),
            concurrency=2,
            heartbeat_seconds=5,
            lease_seconds=30,
            idle_wait_seconds=60,  # a poll would take a minute: only a wake-up is fast
            busy_wait_seconds=0,
        ),
        InProcessDispatcher(),
    )

    def run() -> None:
        try:
            worker.run(stop)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(condition, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_an_enqueue_wakes_an_idle_worker():
    stop = threading.Event()
    thread = idle_worker(stop)
    try:
        time.sleep(1.5)  # let it go idle
        result = tasks.add.enqueue(1, 2)

        seconds = wait_until(
            lambda: TaskExecution.objects.get(pk=result.id).state == "SUCCESSFUL", 10
        )
    finally:
        stop.set()
        thread.join(timeout=10)

    assert seconds < 5


def test_a_rolled_back_enqueue_wakes_nobody_and_leaves_nothing():
    stop = threading.Event()
    thread = idle_worker(stop)
    try:
        time.sleep(1.5)
        with pytest.raises(RuntimeError), transaction.atomic():
            tasks.add.enqueue(1, 2)
            raise RuntimeError("roll back")
        time.sleep(1)
    finally:
        stop.set()
        thread.join(timeout=10)

    assert not thread.is_alive()
    assert TaskExecution.objects.count() == 0
