"""Celery semantics under the django_ray pool: an in-process worker, real Redis, real Ray."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from billiard.exceptions import WorkerLostError
from celery import chain, chord, group
from celery.exceptions import TaskRevokedError

from tests.celery import tasks
from tests.celery.conftest import process_alive, wait_until, written_pid

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("bridge_worker")]
TIMEOUT = 30


def test_a_task_runs_in_a_ray_worker_process_and_its_result_comes_back():
    assert tasks.add.delay(2, 3).get(timeout=TIMEOUT) == 5
    assert tasks.pid.delay().get(timeout=TIMEOUT) != os.getpid()


def test_a_failure_keeps_its_exception_and_traceback():
    result = tasks.fail.delay("no such thing")

    with pytest.raises(ValueError, match=r"^no such thing$"):
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE"
    assert 'tests/celery/tasks.py", line' in result.traceback
    assert result.traceback.rstrip().endswith("ValueError: no such thing")


def test_a_bound_task_sees_its_request(bridge_worker, celery_namespace):
    result = tasks.where.apply_async((1,), {"k": 2})

    assert result.get(timeout=TIMEOUT) | {"pid": None} == {
        "id": result.id,
        "retries": 0,
        "hostname": bridge_worker.hostname,
        "routing_key": celery_namespace,
        "is_eager": False,
        "args": [1],
        "kwargs": {"k": 2},
        "pid": None,
    }


def test_self_retry_with_a_countdown_runs_again_after_it():
    started = time.monotonic()

    assert tasks.retry_once.delay().get(timeout=TIMEOUT) == 1
    assert time.monotonic() - started >= 1


def test_autoretry_for_with_retry_backoff(tmp_path):
    started = time.monotonic()

    assert tasks.flaky.delay(str(tmp_path), 2).get(timeout=TIMEOUT) == 2
    # retry_backoff=1 without jitter: 1 s, then 2 s.
    assert time.monotonic() - started >= 3
    assert len(list(tmp_path.iterdir())) == 3


def test_update_state_is_visible_while_the_task_runs(tmp_path):
    flag = tmp_path / "go"
    result = tasks.progress.delay(str(flag))

    wait_until(lambda: result.state == "PROGRESS", timeout=TIMEOUT)
    assert result.info == {"step": 1}
    flag.touch()
    assert result.get(timeout=TIMEOUT) == "done"


def test_ignore_result_stores_nothing(tmp_path):
    marker = tmp_path / "ran"
    ignored = tasks.ignored.si(str(marker))
    workflow = chain(ignored, tasks.add.si(1, 1)).delay()

    assert workflow.get(timeout=TIMEOUT) == 2
    assert marker.read_text() != str(os.getpid())
    assert workflow.parent.state == "PENDING"


def test_task_signals_fire_in_the_ray_worker_process(signal_dir):
    ok = tasks.pid.delay()
    ray_pid = ok.get(timeout=TIMEOUT)
    failed = tasks.fail.delay("signal me")
    with pytest.raises(ValueError):
        failed.get(timeout=TIMEOUT)

    # task_postrun fires after the result is stored: wait for all three.
    def fired(task_id: str) -> list[str]:
        path = signal_dir / task_id
        lines = path.read_text().splitlines() if path.exists() else []
        return lines if len(lines) == 3 else []

    assert wait_until(lambda: fired(ok.id)) == [
        f"task_prerun {ray_pid}",
        f"task_success {ray_pid}",
        f"task_postrun {ray_pid}",
    ]
    signals = " ".join(wait_until(lambda: fired(failed.id))).split()
    assert signals[0::2] == ["task_prerun", "task_failure", "task_postrun"]
    assert str(os.getpid()) not in signals
    assert (signal_dir / f"process-init-{ray_pid}").exists()


def test_countdown_and_eta_delay_the_run():
    started = time.monotonic()
    by_countdown = tasks.add.apply_async((1, 1), countdown=2)
    by_eta = tasks.add.apply_async((2, 2), eta=datetime.now(UTC) + timedelta(seconds=2))

    assert [by_countdown.get(timeout=TIMEOUT), by_eta.get(timeout=TIMEOUT)] == [2, 4]
    assert time.monotonic() - started >= 2


def test_an_expired_task_is_revoked_not_run():
    result = tasks.add.apply_async((1, 1), expires=datetime.now(UTC) - timedelta(minutes=1))

    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert result.state == "REVOKED"


def test_chain_group_and_chord():
    assert chain(tasks.add.s(1, 2), tasks.add.s(3), tasks.add.s(4)).delay().get(TIMEOUT) == 10
    assert group(tasks.add.s(i, i) for i in range(4)).delay().get(TIMEOUT) == [0, 2, 4, 6]
    assert chord((tasks.add.s(i, i) for i in range(4)), tasks.tsum.s()).delay().get(TIMEOUT) == 12


def test_link_and_link_error(tmp_path):
    linked, errback = tmp_path / "linked", tmp_path / "errback"

    tasks.add.apply_async((1, 2), link=tasks.append.s(str(linked)))
    failed = tasks.fail.apply_async(("bad",), link_error=tasks.on_error.s(str(errback)))

    assert wait_until(lambda: linked.exists() and linked.read_text()) == "3\n"
    assert wait_until(lambda: errback.exists() and errback.read_text()) == (
        f"{failed.id} ValueError: bad"
    )


@pytest.mark.django_db  # the test database exists, for Ray workers to connect to
def test_the_django_fixup_closes_database_connections_per_task():
    runs = [tasks.django_connection_state.delay().get(timeout=TIMEOUT) for _ in range(6)]

    # Six runs on at most four Ray workers: some process ran the task twice.
    assert len({run["pid"] for run in runs}) < len(runs)
    assert [run["closed_at_start"] for run in runs] == [True] * len(runs)


def test_tasks_run_on_the_pools_warm_actors_unless_they_ask_ray_for_options():
    # The pool starts its actors with the worker; until one is ready, tasks run
    # as plain Ray tasks.
    wait_until(lambda: tasks.actor_id.delay().get(timeout=TIMEOUT), timeout=60, interval=0.2)

    actors = [tasks.actor_id.delay().get(timeout=TIMEOUT) for _ in range(12)]
    plain = tasks.actor_id_with_options.delay().get(timeout=TIMEOUT)

    assert None not in actors
    assert len(set(actors)) <= 4  # -c 4: four actors at most, each reused
    assert plain is None


def test_a_lost_ray_worker_is_retried_by_django_rays_policy(tmp_path):
    # MAX_TASK_ATTEMPTS=2 in this module: one crash, then success.
    assert tasks.crash.delay(str(tmp_path / "once"), 1).get(timeout=TIMEOUT) == 1
    assert len(list((tmp_path / "once").iterdir())) == 2

    always = tasks.crash.delay(str(tmp_path / "always"), 99)
    # On the pool's actors a lost worker is ActorDiedError; on a plain Ray task,
    # WorkerCrashedError.
    lost = r"(ActorDiedError|WorkerCrashedError).*not retried: attempt 2 of 2"
    with pytest.raises(WorkerLostError, match=lost):
        always.get(timeout=TIMEOUT)
    assert always.state == "FAILURE"
    assert len(list((tmp_path / "always").iterdir())) == 2


def test_reject_on_worker_lost_requeues_after_the_policy_gives_up(tmp_path):
    # Two lost attempts on Ray; Celery then requeues the message, and run three succeeds.
    assert tasks.crash_late.delay(str(tmp_path), 2).get(timeout=TIMEOUT) == 2
    assert len(list(tmp_path.iterdir())) == 3


def test_soft_time_limit_raises_inside_the_task():
    assert tasks.soft_limited.delay().get(timeout=TIMEOUT) == "soft limit raised in the task"


def test_hard_time_limit_cancels_the_task_on_ray(tmp_path):
    from celery.exceptions import TimeLimitExceeded

    pid_path = tmp_path / "pid"
    result = tasks.hard_limited.delay(str(pid_path))

    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE"
    ray_pid = written_pid(pid_path)
    wait_until(lambda: not process_alive(ray_pid), timeout=10)


def test_log_records_come_back_with_their_extra_fields(caplog):
    with caplog.at_level(logging.WARNING, logger="tests.celery.tasks"):
        result = tasks.chatty.delay("warn")
        ray_pid, _ = result.get(timeout=TIMEOUT)
        record = wait_until(lambda: next(
            (r for r in caplog.records if r.getMessage() == "chatty warns"), None
        ))  # fmt: skip

    assert record.data == {"word": "warn", "pid": ray_pid}  # extra= fields, as the tracer's
    assert (record.msg, record.args) == ("chatty warns", ())
    assert (record.task_id, record.task_name) == (result.id, "tests.celery.tasks.chatty")
    assert record.process == ray_pid != os.getpid()
