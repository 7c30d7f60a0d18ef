"""Calls in flight on Ray: the one way both paths submit, cancel and hear how a call ended.

Each call runs a :class:`~django_ray.runtime.remote.Program` on a warm actor (when
it asks Ray for nothing of its own and one is free) or as a plain Ray task.
Short calls of a known kind wait for a chunk instead (see
:mod:`~django_ray.runtime.chunking`): :meth:`Calls.flush` sends them to warm
actors, several per round trip. A call ends through one path, Ray's completion
callback, as an :class:`Ended`: the program's return value, the program's own
error, or a :class:`Loss`. Calls can carry time limits (the hard one cancels
the call on Ray, killing its worker process) and a time before which they must
not start (a retry's backoff); a watcher thread keeps both
(:mod:`~django_ray.runtime.watcher`). How calls start and end on Ray is in
:mod:`~django_ray.runtime.starts`.

Ended calls are handed to ``on_end`` (from Ray's callback thread, where nothing
may call into Ray) or, without it, kept for :meth:`Calls.take`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from django_ray.runtime.actors import WarmActors
from django_ray.runtime.call import Call, Ended
from django_ray.runtime.chunking import Kinds, lanes
from django_ray.runtime.connection import RayUnavailable
from django_ray.runtime.losses import Loss
from django_ray.runtime.remote import (
    NEVER,
    CallOptions,
    Program,
    Recycle,
    forget_remote_functions,
    remote_function,
)
from django_ray.runtime.starts import Starts
from django_ray.runtime.watcher import Watched

logger = logging.getLogger("django_ray.runtime")


class Calls(Starts, Watched):
    """The calls of one program on Ray, by key (an execution id, a Celery job number)."""

    def __init__(
        self,
        program: Program,
        options: CallOptions,
        *,
        warm_actors: bool = False,
        on_end: Callable[[Ended], None] | None = None,
        on_soft_limit: Callable[[Hashable], None] | None = None,
        interval: float = 0.1,
        recycle: Recycle = NEVER,
        cpu_bound_actors: bool = True,
        chunks: bool = False,
        singles_on_actors: bool = True,
    ) -> None:
        import ray

        self._ray = ray
        self._program = program
        self._options = options
        self._recycle = recycle
        self._plain = remote_function(recycle.plain_max_calls)
        self._warm = warm_actors
        self._cpu_bound = cpu_bound_actors
        # A recycled actor must retire after exactly its share of calls: no chunks then.
        self._chunks = chunks and warm_actors and recycle == NEVER
        # Whether a call that is not chunked takes an idle actor (else it runs as a task).
        self._singles = singles_on_actors
        self.kinds = Kinds()
        self._queue: list[Call] = []  # waiting for a chunk
        self._chunks_out = 0
        self._dispatchable = False  # an actor came back while calls wait for a chunk
        self.actors = self._new_actors() if warm_actors else None
        self._retired: list[WarmActors] = []  # after a switch, until their calls end
        self._unreachable = []  # see Starts._chunk_done
        self._on_end = on_end
        self._on_soft_limit = on_soft_limit
        self._interval = interval
        self._lock = threading.Lock()
        self._calls: dict[Hashable, Call] = {}
        self._ended: list[Ended] = []
        self._arrived = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._local_node = _local_node_id(ray)

    @property
    def in_flight(self) -> int:
        """Calls submitted (or waiting to start) that have not ended yet."""
        return len(self._calls)

    def submit(
        self,
        key: Hashable,
        payload: Any,
        *,
        options: Mapping[str, Any] | None = None,
        soft_limit: float | None = None,
        hard_limit: float | None = None,
        not_before: float = 0.0,
        kind: Hashable = None,
    ) -> str:
        """Start a call; returns its Ray task id. Raises :class:`RayUnavailable` when Ray
        does not answer; its ``unstarted`` then names this call and those that waited for a
        chunk, which are forgotten too.

        A short call of a known ``kind`` waits for :meth:`flush` instead, and the id is
        empty. With ``not_before`` (monotonic), the watcher thread starts the call once that
        time has come, and the id is empty: the way to submit from Ray's callback thread,
        which must never call into Ray itself.
        """
        call = Call(
            key=key,
            payload=payload,
            options=options or {},
            soft_limit=soft_limit,
            hard_limit=hard_limit,
            not_before=not_before,
            kind=kind,
        )
        with self._lock:  # before submitting: the call may end before submit() returns
            self._calls[key] = call
            if self._chunkable(call):
                call.queued = True
                self._queue.append(call)
                return ""
        if soft_limit or hard_limit or not_before:
            self._watch()
        if not_before:
            return ""
        try:
            self._start(call)
        except RayUnavailable as exc:
            with self._lock:
                unstarted = (key, *(call.key for call in self._forget_queue()))
                for unsent in unstarted:
                    self._calls.pop(unsent, None)
            raise RayUnavailable(str(exc), unstarted=unstarted) from exc
        except BaseException:
            with self._lock:
                self._calls.pop(key, None)
            raise
        return call.handle

    def flush(self) -> dict[Hashable, str]:
        """Send the calls that wait for a chunk to the idle warm actors; returns the Ray task
        ids of those sent, by key. Not from Ray's callback thread.

        At most :func:`~django_ray.runtime.chunking.lanes` chunks are in flight at once:
        calls that come meanwhile wait for one to end (its end is delivered, and the owner
        flushes again), so the busier the caller, the larger the chunks. With no actor idle
        and no chunk in flight, they run as plain Ray tasks. When Ray does not answer, with
        ``on_end`` each unsent call ends lost, else :class:`RayUnavailable` names them
        (``unstarted``), forgotten.
        """
        sent: dict[Hashable, str] = {}
        while True:
            with self._lock:
                if not self._queue or self._chunks_out >= lanes(self.actors):
                    return sent
                actor = self.actors.take() if self.actors is not None else None
                if actor is None and self._chunks_out:
                    return sent
                if actor is None:
                    members, self._queue = self._queue, []
                else:
                    members = self.kinds.take_chunk(self._queue)
                for call in members:
                    call.queued = False
            try:
                if actor is None:
                    for call in members:
                        self._start(call)
                else:
                    self._start_chunk(members, actor, lane=True)
            except Exception as exc:
                self._not_started(members, exc)
                continue
            sent.update((call.key, call.handle) for call in members if call.handle)

    def cancel(self, key: Hashable, loss: Loss = Loss.CANCELLED) -> bool:
        """Stop the call on Ray now (killing its worker process if it runs); it ends with
        ``loss``. False if there is no such call, or it was stopped already.

        A call in a chunk is stopped by killing the chunk's actor: the chunk's other calls
        that had not come back end with it, lost (``WORKER_DIED``). They end at once, not
        when Ray reports the actor dead (which can take seconds on a busy node).
        """
        ended: list[Ended] = []
        with self._lock:
            call = self._calls.get(key)
            if call is None or call.stopped is not None:
                return False
            call.stopped = loss
            waiting = call.ref is None
            if waiting:
                del self._calls[key]
                if call in self._queue:
                    self._queue.remove(call)
                ended.append(Ended(key, "", loss=loss))
            chunk = call.chunk
            kill = chunk is not None and not chunk.killed and not waiting
            if kill:
                assert chunk is not None
                chunk.killed = True
                ended += self._end_killed(chunk, call, loss)
        if kill:
            assert chunk is not None
            chunk.pool.kill(chunk.actor)
        elif not waiting and chunk is None:
            try:
                self._ray.cancel(call.ref, force=True)
            except Exception as exc:  # it ends (or Ray is gone) all the same
                logger.warning("Cancelling Ray task %s: %s", call.handle, exc)
        for end in ended:
            self._deliver(end)
        return True

    def take(self, timeout: float, at_least: int = 1) -> list[Ended]:
        """Every call ended by now, waiting up to ``timeout`` for ``at_least`` of them (or for
        all that are in flight, if fewer), or until calls that wait for a chunk can be sent
        (the caller flushes then). Only without ``on_end``."""
        with self._arrived:
            need = max(1, min(at_least, len(self._ended) + len(self._calls)))
            if len(self._ended) < need and timeout > 0 and not self._dispatchable:
                self._arrived.wait_for(
                    lambda: len(self._ended) >= need or self._dispatchable, timeout
                )
            self._dispatchable = False
            ended, self._ended = self._ended, []
        return ended

    def hurry(self) -> None:
        """Start every call that waits for its time now (the pool is draining)."""
        with self._lock:
            for call in self._calls.values():
                call.not_before = 0.0

    def resize(self, size: int) -> None:
        """Keep ``size`` warm actors (at most the cluster's CPUs)."""
        if self.actors is not None:
            self.actors.resize(size)

    def switch(self, program: Program, options: CallOptions) -> None:
        """Run ``program`` from now on, in new Ray worker processes; calls in flight end
        where they run, and the old actors go once they are idle (a pool restart)."""
        self._program, self._options = program, options
        if self.actors is not None:
            old, self.actors = self.actors, self._new_actors()
            self.actors.resize(old.size)
            old.close()
            self._retired.append(old)

    def pid(self, key: Hashable) -> int:
        """The Ray worker process running the call, when it runs alone on a warm actor
        (else 0)."""
        with self._lock:
            call = self._calls.get(key)
            chunk = call.chunk if call is not None else None
        if chunk is None or chunk.killed or len(chunk.members) > 1:
            return 0  # a process shared by several calls names none of them
        return chunk.pool.pid(chunk.actor)

    @property
    def waiting(self) -> int:
        """How many calls wait for a chunk."""
        return len(self._queue)

    def queued(self, key: Hashable) -> bool:
        """Whether the call waits for a chunk (not sent to Ray yet)."""
        with self._lock:
            call = self._calls.get(key)
            return call is not None and call.queued

    def reset(self) -> list[Ended]:
        """After Ray came back on a new connection: every call in flight was lost with the
        old one, and actors and remote functions are made anew."""
        with self._lock:
            lost, self._calls = list(self._calls.values()), {}
            self._queue, self._chunks_out, self._unreachable = [], 0, []
        forget_remote_functions()
        self._plain = remote_function(self._recycle.plain_max_calls)
        self._local_node = _local_node_id(self._ray)
        if self.actors is not None:
            size, self.actors = self.actors.size, self._new_actors()
            self.actors.resize(size)
        gone = RayUnavailable("Ray went away under the call")
        return [Ended(call.key, call.handle, error=gone, loss=Loss.RAY_GONE) for call in lost]

    def close(self) -> None:
        """Stop the watcher and let the warm actors go (calls in flight are not waited for)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        for pool in [*self._retired, *([self.actors] if self.actors is not None else [])]:
            pool.close()

    def _chunkable(self, call: Call) -> bool:
        return (
            self._chunks
            and not (call.options or call.soft_limit or call.hard_limit or call.not_before)
            and self.kinds.short(call.kind)
        )

    def _deliver(self, ended: Ended) -> None:
        if self._on_end is not None:
            self._on_end(ended)
            return
        with self._arrived:
            self._ended.append(ended)
            self._arrived.notify()


def _local_node_id(ray: Any) -> str:
    """This process's own Ray node (empty when not connected)."""
    try:
        return str(ray.get_runtime_context().get_node_id() or "")
    except Exception:
        return ""
