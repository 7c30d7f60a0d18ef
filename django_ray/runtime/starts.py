"""How the calls of :class:`~django_ray.runtime.calls.Calls` reach Ray, and come back.

A call starts as a plain Ray task (which Ray schedules by its resources) or
on a warm actor, alone or in a chunk with others; Ray's completion callback
brings back how each ended. The calls of an actor that Ray can no longer reach
end once Ray has declared it dead (a node dying takes its health checks), with
Ray's word on why. Part of ``Calls``, kept apart to stay readable: the state it
works on is made in ``Calls.__init__``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, NoReturn

from django_ray.runtime.actors import WarmActors, known_dead
from django_ray.runtime.call import Call, Chunk, Ended
from django_ray.runtime.chunking import Kinds
from django_ray.runtime.connection import RayUnavailable
from django_ray.runtime.losses import Loss, classify
from django_ray.runtime.remote import CallOptions, Program, Recycle, Retiring

# How long the calls of an actor that Ray lost touch with wait for Ray to say whether it
# died (noticing a dead node takes Ray its health checks) before they end lost anyway.
UNREACHABLE_SECONDS = 60.0


class Starts:
    """Starting calls on Ray and hearing how they ended (a part of ``Calls``)."""

    _ray: Any
    _program: Program
    _options: CallOptions
    _recycle: Recycle
    _plain: Any
    _cpu_bound: bool
    _singles: bool
    _lock: threading.Lock
    _arrived: threading.Condition
    _calls: dict[Hashable, Call]
    _queue: list[Call]
    _chunks_out: int
    _dispatchable: bool
    _local_node: str
    _retired: list[WarmActors]
    _unreachable: list[tuple[Chunk, BaseException, float]]  # with the time to give up
    actors: WarmActors | None
    kinds: Kinds
    _on_end: Callable[[Ended], None] | None
    _deliver: Callable[[Ended], None]
    _watch: Callable[[], None]

    def _new_actors(self) -> WarmActors:
        return WarmActors(
            self._program,
            self._options.env_option,
            recycle=self._recycle,
            cpu_bound=self._cpu_bound,
        )

    def _start(self, call: Call) -> None:
        """Start one call: on an idle actor if it may take one, else as a plain Ray task."""
        if self._retired:
            self._retired = [pool for pool in self._retired if not pool.reap()]
        pool = self.actors if self._singles and not call.options else None
        actor = pool.take() if pool is not None else None
        if actor is not None:
            self._start_chunk([call], actor)
            return
        try:
            chosen = self._options.for_call(call.options)
            remote = self._plain.options(**chosen) if chosen else self._plain
            ref = remote.remote(self._program.run, *self._program.context, call.payload)
        except Exception as exc:
            _refused(exc)
        call.ref, call.handle, call.started = ref, ref.task_id().hex(), time.monotonic()
        ref.future().add_done_callback(lambda future: self._done(call, future))

    def _start_chunk(self, members: list[Call], actor: Any, *, lane: bool = False) -> None:
        assert self.actors is not None
        chunk = Chunk(members, actor, self.actors, lane=lane)
        try:
            ref = actor.run.remote([call.payload for call in members])
        except Exception as exc:
            chunk.pool.give_back(actor)
            _refused(exc)
        handle, now = ref.task_id().hex(), time.monotonic()
        with self._lock:
            for call in members:
                call.ref, call.chunk, call.handle, call.started = ref, chunk, handle, now
            self._chunks_out += lane
        ref.future().add_done_callback(lambda future: self._chunk_done(chunk, future))

    def _done(self, call: Call, future: Any) -> None:
        """From Ray's callback thread: a plain Ray task ended."""
        try:
            (value, *took), error = future.result(), None
        except BaseException as exc:
            value, error = None, exc
        else:
            self.kinds.learn(call.kind, *took)
        with self._lock:
            if self._calls.get(call.key) is not call:
                return  # forgotten by reset()
            del self._calls[call.key]
        loss = None
        if error is not None:
            loss = call.stopped or classify(error, self._local_node)
        self._deliver(Ended(call.key, call.handle, value=value, error=error, loss=loss))

    def _chunk_done(self, chunk: Chunk, future: Any) -> None:
        """From Ray's callback thread: a call to a warm actor ended, and with it its chunk."""
        try:
            results, error = future.result(), None
        except BaseException as exc:
            results, error = None, exc
        if isinstance(error, self._ray.exceptions.ActorUnavailableError) and not chunk.killed:
            # Ray lost touch with the actor and has not said whether it died. If its node
            # is dying, a retry now could go to an idle actor there, not known dead yet
            # either, and be lost too: the calls end once Ray has decided.
            with self._lock:
                self._unreachable.append((chunk, error, time.monotonic() + UNREACHABLE_SECONDS))
            self._watch()
            return
        self._chunk_ended(chunk, results, error)

    def _confirm_unreachable(self) -> None:
        """From the watcher: end the calls of each unreachable actor once Ray has declared
        it dead, or after ``UNREACHABLE_SECONDS``, with the error they had."""
        with self._lock:
            waiting = list(self._unreachable)
        for entry in waiting:
            chunk, error, give_up = entry
            dead = not chunk.killed and known_dead(chunk.actor)
            if not (dead or chunk.killed or time.monotonic() >= give_up):
                continue  # Ray has not decided yet
            with self._lock:
                if entry not in self._unreachable:
                    continue  # forgotten by reset()
                self._unreachable.remove(entry)
            if dead:
                self._end_dead(chunk, error)
            else:
                self._chunk_ended(chunk, None, error)  # (a killed chunk's calls ended then)

    def _end_dead(self, chunk: Chunk, error: BaseException) -> None:
        """End a chunk whose actor died with the error a call to it gets now: Ray's word
        on why it died (its node, or its process)."""
        try:
            ref = chunk.actor.__ray_ready__.remote()
        except Exception:
            self._chunk_ended(chunk, None, error)
            return

        def probed(future: Any) -> None:
            try:
                future.result()
                death: BaseException = error
            except BaseException as exc:
                death = exc
            self._chunk_ended(chunk, None, death)

        ref.future().add_done_callback(probed)

    def _chunk_ended(self, chunk: Chunk, results: Any, error: BaseException | None) -> None:
        retiring = isinstance(results, Retiring)
        if retiring:
            results = results.value
        with self._lock:
            self._chunks_out -= chunk.lane
            live = [
                (index, call)
                for index, call in enumerate(chunk.members)
                if self._calls.get(call.key) is call
            ]
            for _, call in live:
                del self._calls[call.key]
            killed = chunk.killed
        if not killed:
            if retiring or isinstance(error, self._ray.exceptions.RayActorError):
                chunk.pool.drop(chunk.actor)
            else:
                chunk.pool.give_back(chunk.actor)
        for index, call in live:
            if error is None:
                returned, value, *took = results[index]
                self.kinds.learn(call.kind, *took)
                ended = Ended(call.key, call.handle, value=value if returned else None,
                              error=None if returned else value)  # fmt: skip
            else:  # (a killed chunk's calls ended when it was killed: see Calls.cancel)
                loss = call.stopped or classify(error, self._local_node)
                ended = Ended(call.key, call.handle, error=error, loss=loss)
            self._deliver(ended)
        with self._arrived:
            if self._queue:
                self._dispatchable = True
                self._arrived.notify_all()

    def _end_killed(self, chunk: Chunk, stopped: Call, loss: Loss) -> list[Ended]:
        """The ends of a chunk's calls still in flight, its actor being killed to stop one
        (under the lock)."""
        ended = []
        for member in chunk.members:
            if self._calls.get(member.key) is not member:
                continue  # came back already, or forgotten
            del self._calls[member.key]
            if member is stopped:
                error = RuntimeError(f"stopped on Ray ({loss})")
                ended.append(Ended(member.key, member.handle, error=error, loss=loss))
            else:
                error = RuntimeError(
                    "its Ray actor was killed to stop another call of the same chunk"
                )
                ended.append(Ended(member.key, member.handle, error=error, loss=Loss.WORKER_DIED))
        return ended

    def _not_started(self, members: list[Call], exc: Exception) -> None:
        loss = classify(exc) or Loss.RAY_FAILED
        failed = [call for call in members if not call.handle]
        with self._lock:
            if loss is Loss.RAY_GONE:
                failed += self._forget_queue()
            failed = [call for call in failed if self._calls.get(call.key) is call]
            for call in failed:
                del self._calls[call.key]
        if loss is Loss.RAY_GONE and self._on_end is None:
            raise RayUnavailable(
                f"Ray refused a call: {exc}", unstarted=tuple(call.key for call in failed)
            ) from exc
        for call in failed:
            self._deliver(Ended(call.key, "", error=exc, loss=loss))

    def _forget_queue(self) -> list[Call]:
        """Empty the queue (under the lock); the calls stay in ``_calls`` for the caller."""
        queued, self._queue = self._queue, []
        for call in queued:
            call.queued = False
        return queued


def _refused(exc: Exception) -> NoReturn:
    """Raise what a failed submission means: :class:`RayUnavailable` when Ray is gone."""
    if classify(exc) is Loss.RAY_GONE:
        raise RayUnavailable(f"Ray refused a call: {exc}") from exc
    raise exc
