"""Chunks on a real Ray cluster: short calls share a round trip to a warm actor, others don't."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_ray.runtime.call import Ended
from django_ray.runtime.calls import Calls
from django_ray.runtime.chunking import SHORT_CPU_SECONDS, SHORT_SECONDS, lanes
from django_ray.runtime.losses import Loss
from django_ray.runtime.remote import CallOptions
from tests.celery.conftest import wait_until
from tests.ray.chunk_program import PROGRAM

pytestmark = pytest.mark.ray


@pytest.fixture
def calls(ray_connection: str) -> Iterator[Calls]:
    """Calls as the Django worker makes them: chunks on two warm actors, others as tasks."""
    made = Calls(PROGRAM, CallOptions({}), warm_actors=True, chunks=True, singles_on_actors=False)
    made.resize(2)
    assert made.actors is not None
    wait_until(lambda: len(made.actors.pids()) == 2, timeout=60, interval=0.1)
    yield made
    made.close()


def short(calls: Calls, kind: str = "quick") -> str:
    calls.kinds.learn(kind, 0.001, 0.0005)
    return kind


def gather(calls: Calls, count: int, timeout: float = 60) -> dict[object, Ended]:
    """Every call's end, flushing as the worker does while it waits."""
    ended: dict[object, Ended] = {}
    deadline = time.monotonic() + timeout
    while len(ended) < count:
        assert time.monotonic() < deadline, f"only {len(ended)} of {count} calls ended"
        calls.flush()
        ended.update((end.key, end) for end in calls.take(0.2))
    return ended


def test_a_kind_is_short_once_its_calls_were_measured_where_they_ran(calls):
    calls.submit("q", ("value", 1), kind="quick")
    calls.submit("s", ("sleep", SHORT_SECONDS * 2), kind="sleepy")
    calls.submit("c", ("spin", SHORT_CPU_SECONDS * 3), kind="busy")
    assert not calls.kinds.short("quick")  # not seen yet: it ran alone

    ended = gather(calls, 3)

    assert {key: end.value for key, end in ended.items()} == {
        "q": 1,
        "s": SHORT_SECONDS * 2,
        "c": SHORT_CPU_SECONDS * 3,
    }
    assert calls.kinds.short("quick"), calls.kinds.took("quick")
    assert not calls.kinds.short("sleepy")  # it mostly waits: its waits should overlap
    assert not calls.kinds.short("busy")  # too much CPU to hold others back
    seconds, cpu = calls.kinds.took("sleepy") or (0, 0)
    assert seconds >= SHORT_SECONDS * 2 > cpu


def test_short_calls_sent_together_share_one_round_trip(calls):
    kind = short(calls)
    handles = [calls.submit(n, ("value", n), kind=kind) for n in range(20)]
    assert handles == [""] * 20 and calls.waiting == 20  # nothing sent before the flush

    sent = calls.flush()
    ended = gather(calls, 20)

    assert len(set(sent.values())) == 1  # one Ray call for the twenty
    assert {key: end.value for key, end in ended.items()} == {n: n for n in range(20)}
    assert {end.handle for end in ended.values()} == set(sent.values())


def test_a_lone_short_call_is_sent_at_once(calls):
    kind = short(calls)
    calls.submit("alone", ("value", "v"), kind=kind)

    assert list(calls.flush()) == ["alone"]
    assert gather(calls, 1)["alone"].value == "v"


def test_calls_with_a_time_limit_or_ray_options_are_never_chunked(calls):
    kind = short(calls)

    assert calls.submit("limited", ("value", 1), kind=kind, hard_limit=30)
    assert calls.submit("options", ("value", 2), kind=kind, options={"num_cpus": 0.5})
    assert calls.waiting == 0
    assert {key: end.value for key, end in gather(calls, 2).items()} == {
        "limited": 1,
        "options": 2,
    }


def test_an_error_stays_with_its_own_call(calls):
    kind = short(calls)
    for key, payload in {"a": ("value", 1), "b": ("raise", "broken"), "c": ("value", 3)}.items():
        calls.submit(key, payload, kind=kind)

    ended = gather(calls, 3)

    assert (ended["a"].value, ended["c"].value) == (1, 3)
    assert ended["b"].loss is None  # the program raised: not a loss
    assert isinstance(ended["b"].error, ValueError) and str(ended["b"].error) == "broken"


def test_cancelling_a_call_of_a_chunk_kills_its_actor_and_loses_the_calls_behind_it(
    calls, tmp_path: Path
):
    kind = short(calls)
    flag = tmp_path / "never"
    calls.submit("stuck", ("block", str(flag)), kind=kind)
    calls.submit("behind", ("value", 2), kind=kind)
    assert calls.actors is not None
    before = set(calls.actors.pids())
    sent = calls.flush()
    assert sent["stuck"] == sent["behind"]
    pid = int(wait_until(lambda: Path(f"{flag}.started").exists() and Path(f"{flag}.started")
                         .read_text(), timeout=30))  # fmt: skip

    assert calls.cancel("stuck")
    ended = gather(calls, 2)

    assert ended["stuck"].loss is Loss.CANCELLED
    assert ended["behind"].loss is Loss.WORKER_DIED
    assert "killed to stop another call of the same chunk" in str(ended["behind"].error)
    assert pid in before
    calls.submit("after", ("value", 3), kind=kind)
    assert gather(calls, 1)["after"].value == 3  # the next chunk runs, on another actor
    assert pid not in calls.actors.pids()


def test_calls_wait_while_every_lane_is_busy_and_go_together_after(calls, tmp_path: Path):
    kind = short(calls)
    busy = lanes(calls.actors)
    flags = [tmp_path / f"lane-{n}" for n in range(busy)]
    for n, flag in enumerate(flags):  # one chunk per lane, each blocked
        calls.submit(f"lane-{n}", ("block", str(flag)), kind=kind)
        assert calls.flush()
    for n in range(3):
        calls.submit(n, ("value", n), kind=kind)

    assert calls.flush() == {} and calls.waiting == 3
    flags[0].write_text("go")
    ended = gather(calls, 4)

    assert {ended[n].value for n in range(3)} == {0, 1, 2}
    assert len({ended[n].handle for n in range(3)}) == 1  # sent as one chunk
    for flag in flags[1:]:
        flag.write_text("go")
    gather(calls, busy - 1)
