"""Warm actors: Ray worker processes started ahead of the calls, each running one at a time.

An actor holds no CPU while it lives (Ray's default for actors), so it never
keeps a plain Ray task from running. Actors are placed in turn on the live
nodes that have CPUs (softly: Ray may place one elsewhere if its node is
gone), so they spread over the cluster and stay off a head node started with
no CPUs; Ray's own ``SPREAD`` is best effort and put all of them on one node
now and then. There are never more actors than the cluster has CPUs (as it
was when last resized): beyond that, calls run as plain Ray tasks, which Ray
queues by CPU. One that died or was killed is replaced.

Nothing here may call into Ray from Ray's callback thread (a call there never
returns): actors to kill are only queued there, and killed on the next
``take`` or ``resize``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from django_ray.runtime.remote import NEVER, Program, Recycle, actor_class, actor_options

logger = logging.getLogger("django_ray.runtime")

# After an actor failed to start, how long before another start is tried.
START_BACKOFF_SECONDS = 30.0
# Actors starting at once: each sets a program up in a process of its own, and many at
# once on a few cores would make the first of them ready last.
STARTING_AT_ONCE = 2


class WarmActors:
    """A program's actors: ``take`` one for a call, ``give_back`` or ``drop`` it after."""

    def __init__(
        self,
        program: Program,
        options: Mapping[str, Any] | None = None,
        *,
        recycle: Recycle = NEVER,
        cpu_bound: bool = True,
    ) -> None:
        import ray

        self._ray = ray
        self._program = program
        self._recycle = recycle
        # Without it, as many actors as asked for: Celery's ``-c N`` is N processes.
        self._cpu_bound = cpu_bound
        self._pids: dict[Any, int] = {}
        self._class = actor_class()
        self._options = actor_options(**(options or {}))
        self._lock = threading.Lock()
        self._size = 0
        self._idle: list[Any] = []
        self._busy = 0
        self._starting: dict[Any, Any] = {}  # ready ref -> actor
        self._doomed: list[Any] = []  # to kill from a thread that may call Ray
        self._next_start = 0.0
        self._turn = 0  # which node the next actor goes to

    @property
    def size(self) -> int:
        return self._size

    def resize(self, size: int) -> None:
        """Keep ``size`` actors (at most the cluster's CPUs); extra ones go once idle."""
        cpus = int(self._ray.cluster_resources().get("CPU", 0)) if self._cpu_bound else size
        with self._lock:
            self._size = min(size, cpus)
            while self._idle and self._count() > self._size:
                self._doomed.append(self._idle.pop())
            self._reap()
            self._start_missing()

    def take(self) -> Any | None:
        """An idle actor, marked busy; None when none is ready (the caller uses a task).

        Idle actors that Ray reported dead (their node died while they waited) are
        never handed out: they are replaced, as are those that died busy.
        """
        with self._lock:
            self._promote_started()
            self._forget_dead()
            self._reap()
            self._start_missing()
            if not self._idle:
                return None
            self._busy += 1
            return self._idle.pop()

    def give_back(self, actor: Any) -> None:
        """A busy actor's call ended: idle again, or killed later if the pool shrank.

        Safe from Ray's callback thread.
        """
        with self._lock:
            self._busy -= 1
            if self._count() < self._size:
                self._idle.append(actor)
            else:
                self._doomed.append(actor)

    def drop(self, actor: Any) -> None:
        """A busy actor died, was killed or retired: killed later (in case it is only out of
        reach), then replaced. Safe from Ray's callback thread."""
        with self._lock:
            self._busy -= 1
            self._doomed.append(actor)

    def pid(self, actor: Any) -> int:
        """The Ray worker process of a started actor."""
        with self._lock:
            return self._pids.get(actor, 0)

    def pids(self) -> list[int]:
        """The Ray worker processes of the actors that have started (idle or busy).

        Not from Ray's callback thread.
        """
        with self._lock:
            self._promote_started()
            return sorted(self._pids.values())

    def reap(self) -> bool:
        """Kill what waits to be killed; True once a closed pool has nothing left.

        Not from Ray's callback thread.
        """
        with self._lock:
            self._reap()
            return self._size == 0 and not (self._busy or self._idle or self._starting)

    def kill(self, actor: Any) -> None:
        """Kill a busy actor now (its call was cancelled); it is replaced.

        Not from Ray's callback thread.
        """
        with self._lock:
            self._busy -= 1
            self._pids.pop(actor, None)
            self._ray.kill(actor, no_restart=True)

    def close(self) -> None:
        """Kill every actor that is not busy (busy ones go when their calls end)."""
        with self._lock:
            self._size = 0
            self._doomed += self._idle + list(self._starting.values())
            self._idle, self._starting = [], {}
            self._reap()

    def _reap(self) -> None:
        for actor in self._doomed:
            self._pids.pop(actor, None)
            self._ray.kill(actor, no_restart=True)
        self._doomed.clear()

    def _forget_dead(self) -> None:
        # Ray tells each process holding a handle of its actor's death; asking the
        # handle is a local look-up (well under a microsecond), as Ray Data's own actor
        # pools do it. A call sent to a dead actor would fail at once, as a lost attempt
        # of a task that never ran.
        dead = [actor for actor in self._idle if known_dead(actor)]
        if dead:
            self._idle = [actor for actor in self._idle if actor not in dead]
            self._doomed += dead

    def _count(self) -> int:
        return len(self._idle) + self._busy + len(self._starting)

    def _promote_started(self) -> None:
        if not self._starting:
            return
        refs = list(self._starting)
        started, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in started:
            actor = self._starting.pop(ref)
            try:
                self._pids[actor] = self._ray.get(ref)
            except Exception as exc:
                self._next_start = time.monotonic() + START_BACKOFF_SECONDS
                logger.warning(
                    "A warm Ray actor failed to start (%s); calls run as plain Ray tasks "
                    "meanwhile, and another start is tried in %.0f s",
                    *(exc, START_BACKOFF_SECONDS),
                )
                continue
            if self._count() < self._size:
                self._idle.append(actor)
            else:
                self._pids.pop(actor, None)
                self._ray.kill(actor, no_restart=True)
        self._start_missing()

    def _start_missing(self) -> None:
        if time.monotonic() < self._next_start:
            return
        room = STARTING_AT_ONCE - len(self._starting)
        missing = min(self._size - self._count(), room)
        nodes = self._cpu_nodes() if missing > 0 else []
        for _ in range(missing):
            options = dict(self._options)
            if nodes:
                self._turn += 1
                options["scheduling_strategy"] = self._on_node(nodes[self._turn % len(nodes)])
            actor = self._class.options(**options).remote(self._program, self._recycle)
            self._starting[actor.pid.remote()] = actor

    def _cpu_nodes(self) -> list[str]:
        """The live nodes with CPUs, in a stable order ([] if Ray cannot say)."""
        try:
            found = self._ray.nodes()
        except Exception:
            return []
        alive = [n for n in found if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        return sorted(str(node["NodeID"]) for node in alive)

    def _on_node(self, node_id: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node_id, soft=True)


def known_dead(actor: Any) -> bool:
    """Whether Ray has told this process that ``actor`` is dead."""
    from ray.core.generated import gcs_pb2

    try:
        return bool(actor._get_local_state() == gcs_pb2.ActorTableData.DEAD)  # type: ignore[attr-defined]
    except Exception:  # a handle that cannot tell: it is found dead when called
        return False
