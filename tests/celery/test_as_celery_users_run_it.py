"""What operators of a Celery worker rely on, under ``-P django_ray`` as under prefork:
task logs in the worker's log, events for monitors (what Flower reads), and recycling
of worker processes (max tasks or memory per child, pool restarts)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.celery import tasks
from tests.celery.conftest import WorkerProcess, wait_until

pytestmark = [pytest.mark.ray]
TIMEOUT = 60


@pytest.mark.parametrize("pool", ["prefork", "django_ray"])
def test_task_logs_reach_the_workers_log_with_the_task_named(start_worker_process, pool):
    worker = start_worker_process("-P", pool, "-c", "1")
    result = tasks.chatty.delay("hello")
    result.get(timeout=TIMEOUT)
    worker.stop()
    log = worker.output()

    # The task's own logger, formatted by the worker's own task formatter at its level,
    # once: not also streamed from the Ray worker's output, "(pid=...)" in front.
    task_line = rf"^\[[^]]+: INFO/[^]]+\] tests\.celery\.tasks\.chatty\[{result.id}\]: "
    assert len(re.findall(task_line + "chatty says hello$", log, re.MULTILINE)) == 1
    assert log.count("chatty says hello") == 1
    assert "chatty whispers" not in log  # DEBUG, under the worker's INFO
    # The tracer's record of the outcome, the same way.
    outcome = rf"^\[[^]]+: INFO/[^]]+\] Task tests\.celery\.tasks\.chatty\[{result.id}\] succeeded"
    assert len(re.findall(outcome, log, re.MULTILINE)) == 1


class Events:
    """A real ``app.events.Receiver`` (what Flower runs), in a thread, keeping every event."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._capture, daemon=True)

        self._ready = threading.Event()

    def _capture(self) -> None:
        with tasks.app.connection_for_read() as connection:
            receiver = tasks.app.events.Receiver(connection, handlers={"*": self.seen.append})
            consume_ready = receiver.on_consume_ready

            def ready(*args: Any, **kwargs: Any) -> None:
                consume_ready(*args, **kwargs)
                self._ready.set()  # its queue is bound: no event is missed from here on

            receiver.on_consume_ready = ready
            self._receiver = receiver
            receiver.capture(limit=None, timeout=None, wakeup=False)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(30), "the event receiver did not start"

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)

    def types_for(self, task_id: str) -> list[str]:
        return [event["type"] for event in self.seen if event.get("uuid") == task_id]


@pytest.fixture
def events() -> Iterator[Events]:
    receiver = Events()
    receiver.start()
    yield receiver
    receiver.stop()


def test_monitors_see_every_task_event_with_the_workers_hostname(start_worker_process, events):
    worker = start_worker_process("-P", "django_ray", "-c", "2", "-E")
    ok, failed, retried = tasks.add.delay(2, 3), tasks.fail.delay("no"), tasks.retry_once.delay()
    assert ok.get(timeout=TIMEOUT) == 5
    with pytest.raises(ValueError):
        failed.get(timeout=TIMEOUT)
    retried.get(timeout=TIMEOUT)

    def sees(task_id: str, *types: str) -> bool:
        return set(types) <= set(events.types_for(task_id))

    wait_until(lambda: sees(retried.id, "task-retried", "task-succeeded"), timeout=TIMEOUT)
    assert sees(ok.id, "task-received", "task-started", "task-succeeded")
    assert sees(failed.id, "task-received", "task-started", "task-failed")
    hostnames = {event["hostname"] for event in events.seen if event.get("uuid") == ok.id}
    assert hostnames == {worker.name}


def pids_of(count: int) -> list[int]:
    """The Ray worker process of each of ``count`` tasks run one after the other."""
    return [tasks.chatty.delay("x").get(timeout=TIMEOUT)[0] for _ in range(count)]


def test_max_tasks_per_child_retires_each_ray_worker_after_that_many(start_worker_process):
    start_worker_process("-P", "django_ray", "-c", "1", "--max-tasks-per-child", "2")

    pids = pids_of(6)

    # No Ray worker process ran more than two (warm actors retire, and a plain Ray task's
    # process gets Ray's max_calls), and none of the six tasks was lost in a switch.
    assert max(pids.count(pid) for pid in pids) <= 2
    assert len(set(pids)) >= 3


def test_max_memory_per_child_retires_a_ray_worker_above_the_limit(start_worker_process):
    # 1 KiB: every Ray worker is over it after its first task.
    start_worker_process("-P", "django_ray", "-c", "1", "--max-memory-per-child", "1")

    pids = pids_of(3)

    assert len(set(pids)) == 3  # and no task was lost in the switch


def test_pool_restart_runs_later_tasks_in_fresh_ray_workers(start_worker_process):
    worker = start_worker_process(
        "-P", "django_ray", "-c", "1", env={"CELERY_BRIDGE_TEST_POOL_RESTARTS": "1"}
    )
    before_pid, imported_before = tasks.chatty.delay("x").get(timeout=TIMEOUT)

    replies = tasks.app.control.pool_restart(destination=[worker.name], reply=True, timeout=10)

    assert replies == [{worker.name: {"ok": "reload started"}}]
    after_pid, imported_after = tasks.chatty.delay("x").get(timeout=TIMEOUT)
    assert after_pid != before_pid
    assert imported_after > imported_before  # the task modules were imported anew


def test_pool_restart_is_refused_unless_enabled(start_worker_process):
    worker: WorkerProcess = start_worker_process("-P", "django_ray", "-c", "1")

    replies = tasks.app.control.pool_restart(destination=[worker.name], reply=True, timeout=10)

    assert "Pool restarts not enabled" in str(replies)
