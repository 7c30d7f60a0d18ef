"""The claim query and the fence on outcomes, against the real database."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_ray.lifecycle import attempts
from django_ray.models import TaskExecution
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def claim(limit, queues=("default", "other"), worker="w1"):
    return attempts.claim(limit, worker_id=worker, queues=queues, runner="ray_core")


def test_claims_in_priority_then_enqueue_order():
    low = tasks.add.using(priority=-1).enqueue(0, 0)
    first = tasks.add.enqueue(1, 1)
    second = tasks.add.enqueue(2, 2)
    high = tasks.add.using(priority=50).enqueue(3, 3)

    claimed = claim(10)

    assert [str(row.pk) for row in claimed] == [high.id, first.id, second.id, low.id]


def test_claim_marks_rows_running_for_the_worker():
    tasks.add.enqueue(1, 1)

    (row,) = claim(1, worker="worker-a")

    row.refresh_from_db()
    assert (row.state, row.attempt, row.worker, row.worker_ids, row.runner) == (
        "RUNNING",
        1,
        "worker-a",
        ["worker-a"],
        "ray_core",
    )
    assert row.claim_token is not None
    assert row.started_at == row.last_attempted_at


def test_claim_respects_the_limit_and_never_returns_a_row_twice():
    for i in range(5):
        tasks.add.enqueue(i, i)

    first, second, third = claim(3), claim(3), claim(3)

    assert (len(first), len(second), len(third)) == (3, 2, 0)
    assert not {r.pk for r in first} & {r.pk for r in second}


def test_claim_serves_only_the_given_queues():
    tasks.add.enqueue(1, 1)
    other = tasks.multiply.enqueue(2, 3)

    claimed = claim(10, queues=["other"])

    assert [str(row.pk) for row in claimed] == [other.id]


def test_claim_waits_for_run_after():
    later = tasks.add.using(run_after=timezone.now() + datetime.timedelta(minutes=5)).enqueue(1, 1)
    due = tasks.add.using(run_after=timezone.now() - datetime.timedelta(seconds=1)).enqueue(2, 2)

    claimed = claim(10)

    assert [str(row.pk) for row in claimed] == [due.id]
    assert TaskExecution.objects.get(pk=later.id).state == "READY"


def test_claim_statements_do_not_grow_with_the_batch_size():
    for i in range(20):
        tasks.add.enqueue(i, i)

    with CaptureQueriesContext(connection) as queries:
        claimed = claim(20)

    assert len(claimed) == 20
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        # Lock, update and return the batch in one round trip, in autocommit.
        assert statements == ["WITH"]
    else:
        assert [s for s in statements if s in {"SELECT", "UPDATE"}] == [
            "SELECT",
            "UPDATE",
            "SELECT",
        ]


def test_claim_keeps_the_rows_of_other_backends_and_other_states():
    ready = tasks.add.enqueue(1, 1)
    TaskExecution.objects.filter(pk=ready.id).update(backend="other")
    running = tasks.add.enqueue(2, 2)
    TaskExecution.objects.filter(pk=running.id).update(state="RUNNING")
    mine = tasks.add.enqueue(3, 3)

    claimed = claim(10)

    assert [str(row.pk) for row in claimed] == [mine.id]
    assert TaskExecution.objects.get(pk=ready.id).state == "READY"
    assert TaskExecution.objects.get(pk=running.id).attempt == 0


def test_a_retry_keeps_its_first_start_and_appends_the_worker():
    tasks.add.enqueue(1, 1)
    (first,) = claim(1, worker="w1")
    TaskExecution.objects.filter(pk=first.pk).update(state="READY")

    (second,) = claim(1, worker="w2")

    assert (second.attempt, second.worker_ids, second.started_at) == (
        2,
        ["w1", "w2"],
        first.started_at,
    )
    assert second.last_attempted_at > first.last_attempted_at
    assert second.claim_token != first.claim_token


def test_an_outcome_from_a_stale_attempt_is_not_recorded():
    tasks.add.enqueue(1, 1)
    (stale,) = claim(1)
    TaskExecution.objects.filter(pk=stale.pk).update(state="READY")
    (current,) = claim(1, worker="w2")

    assert attempts.succeed(stale, value=99, now=timezone.now()) is False
    assert attempts.succeed(current, value=2, now=timezone.now()) is True

    current.refresh_from_db()
    assert (current.state, current.result_data, current.attempt, current.worker_ids) == (
        "SUCCESSFUL",
        2,
        2,
        ["w1", "w2"],
    )


def test_a_failure_appends_the_error_of_that_attempt():
    tasks.fail.enqueue("x")
    (row,) = claim(1)
    row.ray_handle = "h-1"
    error = {"exception_class_path": "builtins.ValueError", "message": "x", "traceback": "tb"}

    assert attempts.fail(row, error=error, now=timezone.now()) is True

    recorded = [{**error, "attempt": 1, "worker": "w1", "ray_handle": "h-1", "node": ""}]
    assert row.errors == recorded
    row.refresh_from_db()
    assert row.state == "FAILED"
    assert row.errors == recorded
