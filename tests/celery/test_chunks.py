"""Chunks under the django_ray pool: short tasks share round trips, and each keeps its own
revoke, time limit and result (an in-process worker, real Redis, real Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import group
from celery.exceptions import TaskRevokedError, TimeLimitExceeded

from tests.celery import tasks
from tests.celery.conftest import wait_until

pytestmark = [pytest.mark.ray]
TIMEOUT = 60


def started(flag: Path) -> None:
    wait_until(Path(f"{flag}.started").exists, timeout=TIMEOUT)


def learn_short(worker: object, *signatures: object) -> None:
    """Run each task quickly until the pool knows it as short (a first run in a busy
    process can take long enough to count against it for a few runs)."""
    kinds = worker.consumer.pool._runs.calls.kinds  # type: ignore[attr-defined]
    for _ in range(20):
        group(signature for signature in signatures for _ in range(3))().get(timeout=TIMEOUT)
        if all(kinds.short(signature.task) for signature in signatures):  # type: ignore[attr-defined]
            return
    raise AssertionError(f"never short: {[kinds.took(s.task) for s in signatures]}")  # type: ignore[attr-defined]


def test_revoking_a_task_in_a_chunk_stops_it_and_its_neighbours_run_again(bridge_worker, tmp_path):
    learn_short(bridge_worker, tasks.hold.s(), tasks.gate.s())
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    # Two slow ones hold both lanes (concurrency 4: two chunks in flight at once) ...
    holding = [tasks.hold.delay(str(first))]
    started(first)
    holding.append(tasks.hold.delay(str(second)))
    started(second)
    # ... so these two wait, and go together once a lane is free.
    stuck = tasks.gate.delay(str(third), 1)
    behind = tasks.gate.delay(None, 2)
    first.write_text("go")
    started(third)
    assert not behind.ready()  # behind ``stuck`` in its chunk

    tasks.app.control.revoke(stuck.id, terminate=True)
    # The other lane's task may go now: waiting for it past the revoke only risked its own
    # 60 s wait on a slow machine (CI).
    second.write_text("go")

    with pytest.raises(TaskRevokedError):
        stuck.get(timeout=TIMEOUT)
    assert behind.get(timeout=TIMEOUT) == 2  # lost with the actor, run again by the policy
    assert [result.get(timeout=TIMEOUT) for result in holding] == ["held", "held"]


def test_a_burst_of_short_tasks_shares_round_trips_and_each_keeps_its_result(bridge_worker):
    learn_short(bridge_worker, tasks.add.s(0, 0))
    runs = bridge_worker.consumer.pool._runs
    sent = []
    original = runs.calls._start_chunk

    def counting(members, actor, **kwargs):
        sent.append(len(members))
        return original(members, actor, **kwargs)

    runs.calls._start_chunk = counting
    try:
        results = group(tasks.add.s(n, n) for n in range(200))().get(timeout=TIMEOUT)
    finally:
        del runs.calls._start_chunk
    assert results == [2 * n for n in range(200)]
    assert max(sent) > 1 and len(sent) < 200


def test_a_short_task_sent_with_a_time_limit_still_has_it(bridge_worker, tmp_path):
    learn_short(bridge_worker, tasks.hold.s(), tasks.gate.s())

    limited = tasks.hold.apply_async((str(tmp_path / "never"),), time_limit=1)
    others = group(tasks.gate.s(None, n) for n in range(20))()

    with pytest.raises(TimeLimitExceeded):
        limited.get(timeout=TIMEOUT)
    assert others.get(timeout=TIMEOUT) == list(range(20))
