"""The watcher of :class:`~django_ray.runtime.calls.Calls`: time limits and deferred starts.

A thread, started only once a call has a limit or a time to wait for (or an
actor went out of reach), looks at the calls every ``interval`` seconds: it
cancels one past its hard limit (killing its worker process), tells
``on_soft_limit`` of one past its soft limit, starts one whose time has come (a
retry's backoff), and ends the calls of an actor Ray lost touch with once Ray
has said whether it died (``Starts._confirm_unreachable``). Part of ``Calls``,
kept apart to stay readable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

from django_ray.runtime.call import Call, Ended
from django_ray.runtime.losses import Loss, classify

logger = logging.getLogger("django_ray.runtime")


class Watched:
    """The watcher thread of ``Calls`` (a part of it)."""

    _lock: threading.Lock
    _calls: dict[Hashable, Call]
    _interval: float
    _stop: threading.Event
    _watcher: threading.Thread | None
    _on_soft_limit: Callable[[Hashable], None] | None
    _deliver: Callable[[Ended], None]
    _start: Callable[[Call], None]
    _confirm_unreachable: Callable[[], None]
    cancel: Callable[..., bool]

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
        self._confirm_unreachable()
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            if call.stopped is not None:
                continue
            if call.ref is None:
                if not call.queued and call.not_before <= now:
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
