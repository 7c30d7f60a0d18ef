"""Which calls may share one round trip to a warm actor, and how many at a time.

A Ray call costs about a millisecond of CPU however little it runs. Calls of a
kind (a task's name) that is known to be short wait in the caller for a chunk:
one call to a warm actor runs several of them, in order, for one round trip.
A kind is short when its calls so far spent at most ``SHORT_CPU_SECONDS`` of
CPU and took at most ``SHORT_SECONDS`` each, on average, as measured where
they ran: a call that mostly waits (on I/O, or a sleep) is kept apart so that
its waits overlap, while one that only waited for a busy CPU gains from
chunking most. A chunk holds about ``CHUNK_SECONDS`` of expected work, so no
call waits long behind the others, and only a few chunks are in flight at once
(:func:`lanes`): calls that come meanwhile make the next chunk, so a lone call
starts at once and a busy caller sends larger chunks. A kind not seen yet, or
one that takes longer, is never chunked: it runs alone, where Ray schedules it.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING

from django_ray.runtime.call import Call

if TYPE_CHECKING:
    from django_ray.runtime.actors import WarmActors

SHORT_CPU_SECONDS = 0.01
SHORT_SECONDS = 0.05
CHUNK_SECONDS = 0.05
CHUNK_MAX = 64
# How much one new measurement moves a kind's average (exponentially weighted).
WEIGHT = 0.2


def lanes(actors: WarmActors | None) -> int:
    """How many chunks may be in flight at once: a quarter of the warm actors, at least 2."""
    return max(2, actors.size // 4) if actors is not None else 0


class Kinds:
    """The average time each kind of call takes, and the CPU it spends, where it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._took: dict[Hashable, tuple[float, float]] = {}  # (seconds, CPU seconds)

    def learn(self, kind: Hashable, seconds: float, cpu_seconds: float) -> None:
        if kind is None:
            return
        with self._lock:
            average = self._took.get(kind)
            if average is None:
                self._took[kind] = (seconds, cpu_seconds)
            else:
                self._took[kind] = (
                    average[0] + (seconds - average[0]) * WEIGHT,
                    average[1] + (cpu_seconds - average[1]) * WEIGHT,
                )

    def took(self, kind: Hashable) -> tuple[float, float] | None:
        """A kind's average (seconds, CPU seconds) per call; None before its first."""
        return self._took.get(kind)

    def short(self, kind: Hashable) -> bool:
        took = self._took.get(kind) if kind is not None else None
        return took is not None and took[0] <= SHORT_SECONDS and took[1] <= SHORT_CPU_SECONDS

    def take_chunk(self, queue: list[Call]) -> list[Call]:
        """The calls at the front of ``queue`` that make one chunk (removed from it)."""
        expected = 0.0
        count = 0
        for call in queue[:CHUNK_MAX]:
            took = self._took.get(call.kind)
            expected += took[0] if took is not None else SHORT_SECONDS
            count += 1
            if expected >= CHUNK_SECONDS:
                break
        members = queue[:count]
        del queue[:count]
        return members
