"""An idle worker on PostgreSQL wakes when a task is enqueued, not at its next poll."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from django_ray.models import TaskExecution
from django_ray.testing import InProcessDispatcher
from django_ray.worker.loop import Worker, WorkerOptions
from tests.django.notifications import listening
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


def test_each_enqueue_wakes_its_queue_once_when_its_transaction_commits():
    with listening() as listener:
        with transaction.atomic():
            tasks.add.enqueue(1, 2)
            tasks.multiply.enqueue(3, 4)  # queue "other"
            assert listener.heard() == []  # nothing before the commit

        assert listener.heard() == ["default", "other"]


def test_a_rolled_back_enqueue_sends_no_wakeup():
    with listening() as listener:
        with pytest.raises(RuntimeError), transaction.atomic():
            tasks.add.enqueue(1, 2)
            raise RuntimeError("roll back")

        assert listener.heard() == []


def test_the_table_sends_the_wakeup_whoever_inserts_the_rows():
    with listening() as listener:
        TaskExecution.objects.bulk_create(
            [TaskExecution(task_path="t.a", queue_name=queue) for queue in ("q1", "q2", "q1")]
        )

        assert sorted(listener.heard()) == ["q1", "q2"]  # one per queue of the statement


def test_rows_no_django_worker_would_claim_send_no_wakeup():
    with listening() as listener:
        TaskExecution.objects.create(task_path="tests.testapp.tasks.add", state="RUNNING")
        TaskExecution.objects.create(task_path="celery.add", origin="celery")

        assert listener.heard() == []


def test_an_enqueue_is_one_statement(django_assert_num_queries):
    with django_assert_num_queries(1) as captured:
        tasks.add.enqueue(1, 2)

    assert captured.captured_queries[0]["sql"].startswith('INSERT INTO "django_ray_taskexecution"')
