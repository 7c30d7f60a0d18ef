"""Stopping a worker: SIGTERM with a grace period, a second SIGTERM, and a paused worker."""

from __future__ import annotations

import signal
import time

import pytest
from django.utils import timezone

from django_ray.models import TaskExecution, WorkerLease
from tests.faults.helpers import Summary, pid_alive, started_pids, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def row(result_id: str) -> TaskExecution:
    return TaskExecution.objects.get(pk=result_id)


def test_sigterm_finishes_within_grace_hands_back_the_rest_and_exits_0(spawn, markers):
    stopping = spawn(name="stopping", concurrency=2, extra=["--grace-seconds", "2"])
    stopping_id = stopping.worker_id()
    short = tasks.started_then_sleep.enqueue(str(markers), "short", 1)
    long = tasks.started_then_sleep.enqueue(str(markers), "long", 6)
    wait_for(
        lambda: started_pids(markers, "short") and started_pids(markers, "long"),
        60,
        "both tasks to start on Ray",
    )
    (long_pid,) = started_pids(markers, "long")

    stopping.signal(signal.SIGTERM)
    asked = time.monotonic()
    successor = spawn(name="successor")  # starting up while the first one stops
    code = stopping.wait(30)
    stopped_in = time.monotonic() - asked

    assert code == 0, stopping.output()
    assert stopped_in < 2 + 5
    assert (row(short.id).state, row(short.id).worker) == ("SUCCESSFUL", stopping_id)
    handed_back = row(long.id)
    assert handed_back.state in ("READY", "RUNNING")  # RUNNING: the successor claimed it
    assert handed_back.errors == [] and handed_back.lost_attempts == 0
    lease = WorkerLease.objects.get(pk=stopping_id)
    assert lease.stopping and lease.lease_expires_at <= timezone.now()
    wait_for(lambda: not pid_alive(long_pid), 15, "the handed-back attempt to stop on Ray")
    assert "Handed tests.testapp.tasks.started_then_sleep" in stopping.output()

    successor_id = successor.worker_id()
    wait_for(lambda: row(long.id).state == "SUCCESSFUL", 60, "the successor to finish it")
    finished_in = time.monotonic() - asked
    done = row(long.id)
    Summary(
        "sigterm",
        tasks=2,
        executions=markers.count("short/done") + markers.count("long/done"),
        lost=0,
        duplicates=0,
        recovery_seconds=finished_in,
        notes={"exit_code": code, "stopped_s": round(stopped_in, 1)},
    ).report()
    assert (done.attempt, done.worker, done.errors) == (2, successor_id, [])
    assert len(started_pids(markers, "long")) == 2 and markers.count("long/done") == 1
    assert markers.count("short/done") == 1


def test_a_second_sigterm_stops_at_once_and_the_lease_rules_recover_the_rest(spawn, markers):
    stopping = spawn(name="stopping", concurrency=1, extra=["--grace-seconds", "60"])
    stopping_id = stopping.worker_id()
    held = tasks.started_then_sleep.enqueue(str(markers), "held", 4)
    wait_for(lambda: started_pids(markers, "held"), 60, "the task to start on Ray")

    stopping.signal(signal.SIGTERM)
    successor = spawn(name="successor")
    time.sleep(1)
    assert stopping.alive(), "the first SIGTERM waits for the task (grace 60 s)"
    stopping.signal(signal.SIGTERM)
    asked = time.monotonic()
    code = stopping.wait(20)
    stopped_in = time.monotonic() - asked

    assert code != 0
    assert stopped_in < 5, f"took {stopped_in:.1f}s after the second SIGTERM"
    left = row(held.id)  # not handed back: left RUNNING, or already recovered
    assert (left.state == "RUNNING" and left.worker == stopping_id) or left.lost_attempts == 1
    lease = WorkerLease.objects.get(pk=stopping_id)
    assert lease.stopping and lease.lease_expires_at <= timezone.now()

    successor.worker_id()
    wait_for(lambda: row(held.id).state == "SUCCESSFUL", 60, "the task, recovered")
    done = row(held.id)
    Summary(
        "second-sigterm",
        tasks=1,
        executions=markers.count("held/done"),
        lost=0,
        duplicates=max(markers.count("held/done") - 1, 0),
        recovery_seconds=time.monotonic() - asked,
        notes={"exit_code": code, "stopped_s": round(stopped_in, 1)},
    ).report()
    assert (done.attempt, done.lost_attempts) == (2, 1)
    assert done.errors[0]["exception_class_path"] == "django_ray.worker.recovery.WorkerLost"


def test_a_paused_worker_does_not_record_over_work_another_worker_took(spawn, markers):
    paused = spawn(name="paused", concurrency=1)
    paused_id = paused.worker_id()
    result = tasks.started_then_sleep.enqueue(str(markers), "p", 4)
    wait_for(lambda: started_pids(markers, "p"), 60, "the task to start on Ray")

    paused.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    other = spawn(name="other", concurrency=1)
    other_id = other.worker_id()
    wait_for(
        lambda: row(result.id).attempt == 2 and row(result.id).worker == other_id,
        60,
        "the other worker to take the task over",
    )
    taken_over_in = time.monotonic() - stopped
    # The paused worker's attempt ends on Ray meanwhile; its outcome waits for it.
    wait_for(lambda: markers.count("p/done") >= 1, 30, "the first attempt to end on Ray")

    paused.signal(signal.SIGCONT)
    wait_for(lambda: "lost its lease" in paused.output(), 30, "the resumed worker to notice")
    time.sleep(1)
    current = row(result.id)
    assert (current.attempt, current.worker) == (2, other_id), "recorded over another's work"
    if current.state == "RUNNING":
        assert current.claim_token is not None
    wait_for(lambda: row(result.id).state == "SUCCESSFUL", 60, "the second attempt")

    done = row(result.id)
    runs = markers.count("p/done")
    Summary(
        "paused",
        tasks=1,
        executions=runs,
        lost=0,
        duplicates=runs - 1,
        recovery_seconds=taken_over_in,
        notes={"attempt": done.attempt},
    ).report()
    assert (done.attempt, done.worker, done.lost_attempts) == (2, other_id, 1)
    assert [error["attempt"] for error in done.errors] == [1]
    assert runs == 2  # the paused worker's attempt ran too: a lost attempt is retried
    assert paused.alive() and WorkerLease.objects.alive().filter(pk=paused_id).exists()
    log = paused.output()
    assert "no longer owns the row" in log or "was taken over" in log, log[-3000:]
