"""Calls in flight on Ray: the one way both paths submit, cancel and hear how a call ended.

Each call runs a :class:`~django_ray.runtime.remote.Program` on a warm actor (when
it asks Ray for nothing of its own and one is free) or as a plain Ray task. It
ends through one path, Ray's completion callback, as an :class:`Ended`: the
program's return value, the program's own error, or a :class:`Loss`. Calls can
carry time limits (the hard one cancels the call on Ray, killing its worker
process) and a time before which they must not start (a retry's backoff);
a watcher thread keeps both, started only when a call has one.

Ended calls are handed to ``on_end`` (from Ray's callback thread, where nothing
may call into Ray) or, without it, kept for :meth:`Calls.take`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from django_ray.runtime.actors import WarmActors
from django_ray.runtime.call import Call, Ended
from django_ray.runtime.connection import RayUnavailable
from django_ray.runtime.losses import Loss, classify
from django_ray.runtime.remote import (
    NEVER,
    CallOptions,
    Program,
    Recycle,
    Retiring,
    forget_remote_functions,
    remote_function,
)

logger = logging.getLogger("django_ray.runtime")


class Calls:
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
    ) -> None:
        import ray

        self._ray = ray
        self._program = program
        self._options = options
        self._recycle = recycle
        self._plain = remote_function(program, recycle.plain_max_calls)
        self._warm = warm_actors
        self._cpu_bound = cpu_bound_actors
        self.actors = self._new_actors() if warm_actors else None
        self._retired: list[WarmActors] = []  # after a switch, until their calls end
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
    ) -> str:
        """Start a call; returns its Ray task id. Raises :class:`RayUnavailable` when Ray
        does not answer.

        With ``not_before`` (monotonic), the watcher thread starts the call once that time
        has come, and the id is empty: the way to submit from Ray's callback thread, which
        must never call into Ray itself.
        """
        call = Call(
            key=key,
            payload=payload,
            options=options or {},
            soft_limit=soft_limit,
            hard_limit=hard_limit,
            not_before=not_before,
        )
        with self._lock:  # before submitting: the call may end before submit() returns
            self._calls[key] = call
        if soft_limit or hard_limit or not_before:
            self._watch()
        if not_before:
            return ""
        try:
            self._start(call)
        except BaseException:
            with self._lock:
                self._calls.pop(key, None)
            raise
        return call.handle

    def cancel(self, key: Hashable, loss: Loss = Loss.CANCELLED) -> bool:
        """Stop the call on Ray now (killing its worker process if it runs); it ends with
        ``loss``. False if there is no such call, or it was stopped already."""
        with self._lock:
            call = self._calls.get(key)
            if call is None or call.stopped is not None:
                return False
            call.stopped = loss
            waiting = call.ref is None
            if waiting:
                del self._calls[key]
            actor, call.actor = call.actor, None
        if waiting:
            self._deliver(Ended(key, "", loss=loss))
        elif actor is not None and call.pool is not None:
            call.pool.kill(actor)
        else:
            try:
                self._ray.cancel(call.ref, force=True)
            except Exception as exc:  # it ends (or Ray is gone) all the same
                logger.warning("Cancelling Ray task %s: %s", call.handle, exc)
        return True

    def take(self, timeout: float, at_least: int = 1) -> list[Ended]:
        """Every call ended by now, waiting up to ``timeout`` for ``at_least`` of them (or for
        all that are in flight, if fewer). Only without ``on_end``."""
        with self._arrived:
            need = max(1, min(at_least, len(self._ended) + len(self._calls)))
            if len(self._ended) < need and timeout > 0:
                self._arrived.wait_for(lambda: len(self._ended) >= need, timeout)
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
        self._plain = remote_function(program, self._recycle.plain_max_calls)
        if self.actors is not None:
            old, self.actors = self.actors, self._new_actors()
            self.actors.resize(old.size)
            old.close()
            self._retired.append(old)

    def pid(self, key: Hashable) -> int:
        """The Ray worker process running the call, when it runs on a warm actor (else 0)."""
        with self._lock:
            call = self._calls.get(key)
            actor, pool = (call.actor, call.pool) if call is not None else (None, None)
        return pool.pid(actor) if actor is not None and pool is not None else 0

    def reset(self) -> list[Ended]:
        """After Ray came back on a new connection: every call in flight was lost with the
        old one, and actors and remote functions are made anew."""
        with self._lock:
            lost, self._calls = list(self._calls.values()), {}
        forget_remote_functions()
        self._plain = remote_function(self._program, self._recycle.plain_max_calls)
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

    def _new_actors(self) -> WarmActors:
        return WarmActors(
            self._program,
            self._options.env_option,
            recycle=self._recycle,
            cpu_bound=self._cpu_bound,
        )

    def _start(self, call: Call) -> None:
        if self._retired:
            self._retired = [pool for pool in self._retired if not pool.reap()]
        pool = None if call.options else self.actors
        actor = pool.take() if pool is not None else None
        try:
            if actor is not None:
                ref = actor.run.remote(call.payload)
            else:
                chosen = self._options.for_call(call.options)
                remote = self._plain.options(**chosen) if chosen else self._plain
                ref = remote.remote(*self._program.context, call.payload)
        except Exception as exc:
            if actor is not None and pool is not None:
                pool.give_back(actor)
            if classify(exc) is Loss.RAY_GONE:
                raise RayUnavailable(f"Ray refused a call: {exc}") from exc
            raise
        call.ref, call.actor, call.handle = ref, actor, ref.task_id().hex()
        call.pool = pool if actor is not None else None
        call.started = time.monotonic()
        ref.future().add_done_callback(lambda future: self._done(call, future))

    def _done(self, call: Call, future: Any) -> None:
        """From Ray's callback thread: the call ended."""
        try:
            value, error = future.result(), None
        except BaseException as exc:
            value, error = None, exc
        with self._lock:
            if self._calls.get(call.key) is not call:
                return  # forgotten by reset()
            del self._calls[call.key]
            actor, call.actor = call.actor, None
        retiring = isinstance(value, Retiring)
        if retiring:
            value = value.value
        if actor is not None and call.pool is not None:
            if retiring or isinstance(error, self._ray.exceptions.RayActorError):
                call.pool.drop(actor)
            else:
                call.pool.give_back(actor)
        loss = None
        if error is not None:
            loss = call.stopped or classify(error, self._local_node)
        self._deliver(Ended(call.key, call.handle, value=value, error=error, loss=loss))

    def _deliver(self, ended: Ended) -> None:
        if self._on_end is not None:
            self._on_end(ended)
            return
        with self._arrived:
            self._ended.append(ended)
            self._arrived.notify()

    def _watch(self) -> None:
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._run_watcher, name="django-ray-calls", daemon=True
                )
                self._watcher.start()

    def _run_watcher(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._enforce(time.monotonic())
            except Exception:  # keep watching: a lost watcher would lose every limit
                logger.exception("Watching calls on Ray failed")

    def _enforce(self, now: float) -> None:
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            if call.stopped is not None:
                continue
            if call.ref is None:
                if call.not_before <= now:
                    self._start_waiting(call)
                continue
            elapsed = now - call.started
            if call.hard_limit and elapsed >= call.hard_limit:
                self.cancel(call.key, Loss.TIMED_OUT)
            elif call.soft_limit and not call.soft_warned and elapsed >= call.soft_limit:
                call.soft_warned = True
                if self._on_soft_limit is not None:
                    self._on_soft_limit(call.key)

    def _start_waiting(self, call: Call) -> None:
        with self._lock:
            if self._calls.get(call.key) is not call or call.stopped is not None:
                return
        try:
            self._start(call)
        except Exception as exc:
            with self._lock:
                if self._calls.get(call.key) is not call:
                    return
                del self._calls[call.key]
            self._deliver(Ended(call.key, "", error=exc, loss=classify(exc) or Loss.RAY_FAILED))


def _local_node_id(ray: Any) -> str:
    """This process's own Ray node (empty when not connected)."""
    try:
        return str(ray.get_runtime_context().get_node_id() or "")
    except Exception:
        return ""
