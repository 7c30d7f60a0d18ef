"""What runs on Ray, and with which options: programs, remote functions, actor classes.

A :class:`Program` is what both paths run inside a Ray worker: a function that
takes the call's payload (plus the program's fixed context), and an optional
warm-up that sets the process up once. The Django worker's program runs one
registered task; the Celery pool's runs Celery's tracer. Ray's own retries are
off everywhere (a retry is django-ray's decision), and so are actor restarts.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django_ray.runtime import connection
from django_ray.runtime.connection import merge_runtime_env, worker_runtime_env
from django_ray.tasks import RAY_OPTIONS

_lock = threading.Lock()
_remotes: dict[int, Any] = {}  # by max_calls


@dataclass(frozen=True, slots=True)
class Program:
    """``run(*context, payload)`` in a Ray worker; ``warm_up(*context)`` once per process.

    Both are module-level functions, so they travel by reference; ``context`` is
    plain data sent once per actor (or with each plain task).
    """

    run: Callable[..., Any]
    context: tuple[Any, ...] = ()
    warm_up: Callable[..., Any] | None = None


@dataclass(frozen=True, slots=True)
class Recycle:
    """When a warm actor retires: after ``max_calls`` calls, or once its process's peak
    resident memory passes ``max_memory_kib`` (0: never), as Celery's
    ``worker_max_tasks_per_child`` and ``worker_max_memory_per_child`` retire a child."""

    max_calls: int = 0
    max_memory_kib: int = 0

    @property
    def plain_max_calls(self) -> int:
        """Ray's ``max_calls`` for plain Ray tasks: a memory limit cannot be checked in
        them, so each then runs in a process of its own."""
        return 1 if self.max_memory_kib else self.max_calls


NEVER = Recycle()


@dataclass(frozen=True, slots=True)
class Retiring:
    """A call's value from an actor that has done its share: it is replaced after this."""

    value: Any


class WarmWorker:
    """A Ray actor that keeps one Ray worker process, set up once, for a program's calls.

    Plain Ray tasks pay the raylet a worker lease per call when calls arrive one
    at a time; a call to an actor goes straight to its process, and the
    program's context is sent once, at the actor's start. Each call to it is a
    chunk: one call of the program, or several short ones for one round trip.
    """

    def __init__(self, program: Program, recycle: Recycle = NEVER) -> None:
        self.program = program
        self.recycle = recycle
        self.calls = 0
        if program.warm_up is not None:
            # Set up now, before the first call; if it cannot be, the program's
            # own set-up raises the same error again, to the call.
            with contextlib.suppress(Exception):
                program.warm_up(*program.context)

    def pid(self) -> int:
        """This actor's Ray worker process (the ready call of a starting actor)."""
        return os.getpid()

    def run(self, payloads: list[Any]) -> Any:
        """Run a chunk of calls in order: for each, ``(True, value, *took)`` or, if the
        program raised, ``(False, error, *took)``, ``took`` being its :func:`timed` seconds.
        Wrapped in :class:`Retiring` once this actor has done its share, so that the caller
        replaces it."""
        results = []
        for payload in payloads:
            returned, value, *took = timed(self.program.run, *self.program.context, payload)
            if returned:
                self.calls += 1
            results.append((returned, value if returned else _sendable(value), *took))
        return Retiring(results) if self._spent() else results

    def _spent(self) -> bool:
        recycle = self.recycle
        if recycle.max_calls and self.calls >= recycle.max_calls:
            return True
        if recycle.max_memory_kib:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            return bool(peak > recycle.max_memory_kib)
        return False


def timed(run: Callable[..., Any], *args: Any) -> tuple[bool, Any, float, float]:
    """``run(*args)``: whether it returned, its value (or the error it raised), the seconds
    it took and the CPU seconds its thread spent, measured where it ran: what decides
    whether later calls of its kind are short enough to chunk."""
    started, cpu = time.perf_counter(), time.thread_time()
    try:
        returned, value = True, run(*args)
    except Exception as exc:
        returned, value = False, exc
    return returned, value, time.perf_counter() - started, time.thread_time() - cpu


def run_timed(run: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """A plain Ray task's body: ``run``'s value and :func:`timed`'s seconds, or what it
    raised."""
    returned, value, *took = timed(run, *args)
    if not returned:
        raise value
    return value, *took


def remote_function(max_calls: int = 0) -> Any:
    """:func:`run_timed` as a Ray remote function, with Ray's retries off; a call passes
    the program's ``run`` first (a module-level function: it travels by reference).

    With ``max_calls``, Ray replaces a worker process after that many of its calls
    (Ray takes it only here, not per call).
    """
    import ray

    options: dict[str, Any] = {"max_retries": 0, "retry_exceptions": False}
    if max_calls:
        options["max_calls"] = max_calls
    with _lock:
        if max_calls not in _remotes:
            _remotes[max_calls] = ray.remote(**options)(run_timed)
        return _remotes[max_calls]


def forget_remote_functions() -> None:
    """After a reconnect: remote functions are registered per Ray connection."""
    with _lock:
        _remotes.clear()


def _sendable(exc: Exception) -> Exception:
    """``exc``, or a plain error that says what it was when it cannot be pickled (it is
    returned beside its chunk's other values, which must still arrive)."""
    import ray.cloudpickle

    try:
        ray.cloudpickle.dumps(exc)
    except Exception:
        return RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
    return exc


def actor_class() -> Any:
    """:class:`WarmWorker` as a Ray actor class; start each with :func:`actor_options`."""
    import ray

    return ray.remote(WarmWorker)


def actor_options(**options: Any) -> dict[str, Any]:
    """A warm actor's Ray options: no restarts, no task retries, and ``options``."""
    return {"max_restarts": 0, "max_task_retries": 0, **options}


class CallOptions:
    """The Ray options of each call: a task's own, over what every call gets.

    A task's ``runtime_env`` is merged over the base one (``env_vars`` name by
    name). Ray Core applies the runtime_env given at connect time to every call;
    only when the base differs from it (settings changed since, or Ray was
    connected by someone else) does each call carry its own.
    """

    def __init__(self, runtime_env: Mapping[str, Any], defaults: Mapping[str, Any] | None = None):
        self.runtime_env = dict(runtime_env)
        own = worker_runtime_env(self.runtime_env)
        self.env_option = {} if own == connection.connected_runtime_env else {"runtime_env": own}
        self.defaults = {**(defaults or {}), **self.env_option}

    def for_call(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The Ray options of one call whose own are ``options``."""
        chosen = {**self.defaults, **options}
        if "runtime_env" in options:
            chosen["runtime_env"] = worker_runtime_env(
                merge_runtime_env(self.runtime_env, options["runtime_env"])
            )
        return chosen


def pick(options: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray options among a Django task's options (copied: Ray wants plain dicts)."""
    chosen = {name: options[name] for name in RAY_OPTIONS if name in options}
    if "resources" in chosen:
        chosen["resources"] = dict(chosen["resources"])
    return chosen
