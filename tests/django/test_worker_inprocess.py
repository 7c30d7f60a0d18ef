"""The real worker loop and recording path, with Ray replaced by an in-process call."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus, default_task_backend
from django.utils import timezone

from django_ray.models import TaskExecution, WorkerLease
from django_ray.signals import execution_finished
from django_ray.signing import sign
from django_ray.testing import InProcessDispatcher, drain
from django_ray.worker.loop import Worker, WorkerOptions
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def test_drain_runs_every_task_to_an_end():
    add = tasks.add.enqueue(2, 3)
    mul = tasks.multiply.enqueue(4, 5)
    async_result = tasks.async_add.enqueue(1, 1)

    drain()

    assert default_task_backend.get_result(add.id).return_value == 5
    assert default_task_backend.get_result(mul.id).return_value == 20
    assert default_task_backend.get_result(async_result.id).return_value == 2


def test_a_failing_task_is_failed_with_its_error():
    result = tasks.fail.enqueue("bad input")

    drain()

    failed = default_task_backend.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in failed.errors] == ["builtins.ValueError"]
    assert failed.errors[0].traceback.splitlines()[-1] == "ValueError: bad input"
    row = TaskExecution.objects.get(pk=result.id)
    assert row.errors[0]["message"] == "bad input"
    assert row.errors[0]["exception_bases"] == ["builtins.Exception", "builtins.BaseException"]


def test_an_unserializable_return_value_fails_the_task_naming_it():
    result = tasks.returns_unserializable.enqueue()

    drain()

    row = TaskExecution.objects.get(pk=result.id)
    assert row.state == "FAILED"
    assert row.errors[0]["exception_class_path"] == "django_ray.payloads.PayloadError"
    assert row.errors[0]["message"] == (
        "Task tests.testapp.tasks.returns_unserializable: the return value is of type set, "
        "which is not JSON-serializable; use dict with str keys, list, tuple, str, int, "
        "float, bool or None."
    )


def test_a_row_naming_a_plain_function_fails_and_runs_nothing(tmp_path):
    target = tmp_path / "created-by-os-system"
    # Signed as enqueue() would sign it: the registry still refuses what is no Task.
    row = TaskExecution(task_path="os.system", args=[f"touch {target}"])
    row.signature = sign(row)
    row.save()

    drain()

    row.refresh_from_db()
    assert row.state == "FAILED"
    assert row.errors[0]["exception_class_path"] == "django_ray.registry.UnregisteredTask"
    assert row.errors[0]["message"].startswith("os.system is a builtins.builtin_function_or_method")
    assert not target.exists()


def test_a_context_task_sees_its_own_result():
    result = tasks.whoami.enqueue()

    drain()

    assert default_task_backend.get_result(result.id).return_value == {
        "id": result.id,
        "attempt": 1,
    }


def test_the_worker_holds_a_lease_and_releases_it():
    tasks.add.enqueue(1, 1)

    worker = drain()

    lease = WorkerLease.objects.get(pk=worker.worker_id)
    assert (lease.stopping, lease.runner, lease.queues) == (True, "ray_core", ["default", "other"])
    assert lease.lease_expires_at == lease.heartbeat_at


def test_a_receiver_that_raises_cannot_change_a_recorded_outcome():
    def broken_receiver(**kwargs):
        raise RuntimeError("receiver bug")

    execution_finished.connect(broken_receiver)
    try:
        result = tasks.add.enqueue(1, 2)
        drain()
    finally:
        execution_finished.disconnect(broken_receiver)

    assert default_task_backend.get_result(result.id).return_value == 3


def test_concurrency_bounds_what_is_in_flight():
    for i in range(7):
        tasks.add.enqueue(i, i)
    dispatcher = InProcessDispatcher()

    drain(dispatcher=dispatcher, concurrency=3)

    assert len(dispatcher.submitted) == 7
    assert dispatcher.peak_in_flight == 3
    assert TaskExecution.objects.filter(state="SUCCESSFUL").count() == 7


def test_a_failing_task_is_retried_until_it_succeeds(tmp_path):
    result = tasks.fail_until.enqueue(str(tmp_path), 3)

    drain()

    done = default_task_backend.get_result(result.id)
    assert (done.status, done.return_value, done.attempts) == (TaskResultStatus.SUCCESSFUL, 3, 3)
    assert [e.exception_class_path for e in done.errors] == ["builtins.ConnectionError"] * 2
    row = TaskExecution.objects.get(pk=result.id)
    assert [e["message"] for e in row.errors] == ["run 1 of 3", "run 2 of 3"]
    assert [e["attempt"] for e in row.errors] == [1, 2]


def test_max_task_attempts_bounds_the_retries(settings):
    settings.DJANGO_RAY = {
        **settings.DJANGO_RAY,
        "MAX_TASK_ATTEMPTS": 3,
        "RETRY_BACKOFF_SECONDS": 0,
    }
    result = tasks.always_fail.enqueue("again")

    worker = drain()

    failed = default_task_backend.get_result(result.id)
    assert (failed.status, failed.attempts) == (TaskResultStatus.FAILED, 3)
    assert failed.worker_ids == [worker.worker_id] * 3
    assert len(failed.errors) == 3
    assert failed.last_attempted_at >= failed.started_at


def test_a_retry_waits_for_its_backoff(settings):
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, "RETRY_BACKOFF_SECONDS": 30}
    result = tasks.always_fail.enqueue("later")

    drain()

    row = TaskExecution.objects.get(pk=result.id)
    assert (row.state, row.attempt, row.claim_token, row.worker) == ("READY", 1, None, "")
    assert (row.run_after - row.last_attempted_at).total_seconds() == pytest.approx(30, abs=1)


def test_a_denylisted_error_is_not_retried(settings):
    settings.DJANGO_RAY = {
        **settings.DJANGO_RAY,
        "RETRY_BACKOFF_SECONDS": 0,
        "RETRY_EXCEPTION_DENYLIST": ["builtins.ValueError"],
    }
    result = tasks.always_fail.enqueue("final")

    drain()

    failed = default_task_backend.get_result(result.id)
    assert (failed.status, failed.attempts) == (TaskResultStatus.FAILED, 1)


def test_the_worker_logs_a_summary_line(caplog):
    tasks.add.enqueue(1, 1)
    tasks.fail.enqueue("x")
    dispatcher = InProcessDispatcher()
    worker = Worker(
        WorkerOptions(
            queues=("default",),
            concurrency=4,
            heartbeat_seconds=5,
            lease_seconds=30,
            burst=True,
            idle_wait_seconds=0,
            busy_wait_seconds=0,
        ),
        dispatcher,
    )
    worker.run()
    worker.summary.every = 1e-9

    with caplog.at_level(logging.INFO, logger="django_ray.worker"):
        worker.summary.log_if_due(running=0)

    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Summary")]
    assert line.startswith("Summary: claimed=2 running=0 succeeded=1 failed=1 retried=0 rate=")


def test_a_row_far_past_any_sensible_attempt_count_is_retried_not_crashed(settings):
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, "RETRY_BACKOFF_SECONDS": 60}
    result = tasks.fail.using(max_attempts=100).enqueue("again")
    TaskExecution.objects.filter(pk=result.id).update(attempt=40)  # attempts are not signed
    before = timezone.now()

    drain()

    row = TaskExecution.objects.get(pk=result.id)
    assert (row.state, row.attempt) == ("READY", 41)
    # 60 s * 2**40 would overflow a timedelta; the delay is capped at six hours.
    assert before + timedelta(hours=6) <= row.run_after <= timezone.now() + timedelta(hours=6)
