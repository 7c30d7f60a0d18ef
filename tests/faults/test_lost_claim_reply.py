"""A claim that commits but whose reply never reaches the worker (its connection dropped
between the commit and the read of the claimed rows), as F4's terminated backends can cause.

The real worker loop and recording path run in this process; only Ray is replaced by
django_ray.testing's in-process dispatcher, and the fault is injected at the SQL level.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError, connection

from django_ray.models import TaskExecution
from django_ray.testing import InProcessDispatcher
from django_ray.worker.loop import Worker, WorkerOptions
from tests.faults.helpers import Summary
from tests.testapp import tasks

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_claim_whose_reply_was_lost_is_not_left_running_for_ever(markers):
    results = [tasks.mark_execution.enqueue(str(markers), f"c{i}") for i in range(3)]
    worker = Worker(
        WorkerOptions(
            queues=("default",),
            concurrency=4,
            heartbeat_seconds=0.2,
            lease_seconds=3,
            idle_wait_seconds=0.05,
            busy_wait_seconds=0,
        ),
        InProcessDispatcher(),
    )
    lost_replies: list[str] = []

    def lose_the_claim_reply(execute, sql, params, many, context):
        # The claim (one UPDATE ... RETURNING, in autocommit) runs and commits; then its
        # reply is lost, as with a connection dropped before the rows were read.
        result = execute(sql, params, many, context)
        if sql.startswith("WITH picked") and not lost_replies:
            lost_replies.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        return result

    stop = threading.Event()
    started = time.monotonic()

    def stop_when_done() -> None:
        try:
            while time.monotonic() - started < 8 and not stop.is_set():
                if TaskExecution.objects.finished().count() == len(results):
                    break
                time.sleep(0.1)
        finally:
            stop.set()
            connection.close()  # this thread's own connection

    watcher = threading.Thread(target=stop_when_done)
    watcher.start()
    with connection.execute_wrapper(lose_the_claim_reply):
        worker.run(stop)
    watcher.join()
    took = time.monotonic() - started

    rows = list(TaskExecution.objects.all())
    left = [(row.state, row.attempt, row.worker == worker.worker_id) for row in rows]
    runs = markers.counts(f"c{i}" for i in range(3))
    Summary(
        "lost-claim-reply",
        tasks=len(results),
        executions=sum(runs.values()),
        lost=sum(row.state != "SUCCESSFUL" for row in rows),
        duplicates=sum(max(count - 1, 0) for count in runs.values()),
        recovery_seconds=took,
    ).report()
    assert len(lost_replies) == 1
    assert {row.state for row in rows} == {"SUCCESSFUL"}, (
        f"claimed in the database but never run, RUNNING under a live worker: {left}"
    )
    assert runs == {"c0": 1, "c1": 1, "c2": 1}
    # The lost claim had committed: its rows were handed back and claimed again.
    assert sorted(row.attempt for row in rows) == [2, 2, 2]
