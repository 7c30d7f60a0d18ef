"""The watcher: turns what Ray reports about each job into completions for the pool.

One thread waits for Ray, enforces hard time limits, and resubmits jobs whose
Ray worker was lost when django-ray's retry policy says so. It decides nothing
about the task itself: Celery's tracer did that on Ray, and the pool hands each
completion to Celery's callbacks.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError

from django_ray.retry import Retry, RetryPolicy, decide
from django_ray.runtime.job import describe_error

if TYPE_CHECKING:
    from celery_bridge.dispatch import CeleryDispatcher

logger = logging.getLogger("celery_bridge")


class Kind(enum.Enum):
    RESULT = "result"  # the tracer's (failed, result, runtime): Celery's on_success
    ERROR = "error"  # an ExceptionInfo for Celery's on_failure (lost for good, or broken setup)
    LOST = "lost"  # the Ray worker died; the job waits for its next attempt
    SOFT_TIMEOUT = "soft timeout"  # Celery logs a warning; the task got SoftTimeLimitExceeded
    HARD_TIMEOUT = "hard timeout"  # cancelled on Ray; Celery records TimeLimitExceeded
    DROPPED = "dropped"  # a cancelled job's Ray task ended; Celery was told already


# After these the job holds no slot any more.
FINAL = frozenset({Kind.RESULT, Kind.ERROR, Kind.DROPPED})


@dataclass(eq=False, slots=True, kw_only=True)
class Job:
    """One Celery task run through the pool, across its Ray attempts."""

    number: int  # what Celery takes for the pid (inspect active, revoke --terminate)
    trace_args: tuple[Any, ...]  # fast_trace_task's: name, id, request, body, type, encoding
    callback: Callable[..., Any] | None = None
    error_callback: Callable[..., Any] | None = None
    timeout_callback: Callable[..., Any] | None = None
    soft_timeout: float | None = None
    hard_timeout: float | None = None
    ray_options: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1
    started: float = 0.0  # monotonic, when the current attempt was submitted
    ref: Any = None
    handle: str = ""  # the Ray task id of the current attempt
    actor: Any = None  # the pool's actor running the current attempt, if one does
    future: Any = None  # the current attempt's outcome, once Ray has it
    retry_at: float | None = None
    cancelled: str = ""  # why Celery was already told the outcome: terminated, timed out
    soft_warned: bool = False

    @property
    def task_name(self) -> str:
        return str(self.trace_args[0])

    @property
    def task_id(self) -> str:
        return str(self.trace_args[1])

    @property
    def request(self) -> dict[str, Any]:
        request: dict[str, Any] = self.trace_args[2]
        return request


@dataclass(frozen=True, slots=True)
class Completion:
    job: Job
    kind: Kind
    value: Any = None


class CompletionWatcher:
    """Keeps the jobs on Ray and reports each change through ``deliver``."""

    def __init__(
        self,
        dispatcher: CeleryDispatcher,
        deliver: Callable[[Completion], None],
        policy: Callable[[], RetryPolicy],
        *,
        interval: float = 0.1,
        after_pass: Callable[[], None] | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._deliver = deliver
        self._policy = policy
        self._interval = interval
        self._lock = threading.Lock()
        self._running: dict[int, Job] = {}  # by job number
        self._waiting: list[Job] = []
        self._after_pass = after_pass
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def jobs(self) -> list[Job]:
        with self._lock:
            return [*self._running.values(), *self._waiting]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="celery-bridge-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; jobs stay, for ``poll`` to drain from the caller's thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def submit(self, job: Job) -> None:
        job.started = time.monotonic()
        job.retry_at = None
        with self._lock:  # before submitting: the job may end before submit() returns
            self._running[job.number] = job
        try:
            self._dispatcher.submit(job, self._on_done)
        except Exception as exc:  # Ray unreachable: a loss like any other
            with self._lock:
                self._running.pop(job.number, None)
            self._lost(job, exc)

    def cancel(self, number: int, reason: str) -> Job | None:
        """Cancel the job Celery knows as ``number``; None if there is none."""
        with self._lock:
            job = next((j for j in self._jobs_unlocked() if j.number == number), None)
            if job is None or job.cancelled:
                return None
            job.cancelled = reason
            waiting = job in self._waiting
            if waiting:
                self._waiting.remove(job)
        if waiting:
            self._deliver(Completion(job, Kind.DROPPED))
        else:
            self._dispatcher.cancel(job)
        return job

    def cancel_all(self) -> None:
        for job in self.jobs:
            self.cancel(job.number, "terminated")

    def _jobs_unlocked(self) -> list[Job]:
        return [*self._running.values(), *self._waiting]

    def poll(self, timeout: float, *, draining: bool = False) -> None:
        """One pass: enforce time limits, resubmit due retries (outcomes come by callback)."""
        self._wake.wait(timeout)
        self._wake.clear()
        now = time.monotonic()
        self._enforce_time_limits(now)
        with self._lock:
            due = [j for j in self._waiting if draining or (j.retry_at or 0) <= now]
            self._waiting = [j for j in self._waiting if j not in due]
        for job in due:
            self.submit(job)

    def wake(self) -> None:
        """End the current wait of the watcher's thread now."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll(self._interval)
                if self._after_pass is not None:
                    self._after_pass()
            except Exception:  # keep watching: a lost watcher would lose every ack
                logger.exception("django_ray pool: watcher pass failed")

    def _on_done(self, job: Job, future: Any) -> None:
        """From a Ray thread, once the job's current attempt ended: deliver its outcome.

        The job stays among ``jobs`` until its completion is delivered, so a
        draining pool never stops waiting between the two.
        """
        try:
            self._collect(job)
        except Exception:  # never lose an outcome silently: Celery must hear of it
            logger.exception("django_ray pool: collecting %s failed", job)
            self._deliver(
                Completion(job, Kind.ERROR, exception_info(sys.exception() or Exception()))
            )
        finally:
            with self._lock:
                # Unless a retry of the job was submitted meanwhile (a new future).
                if job.future is future and self._running.get(job.number) is job:
                    del self._running[job.number]

    def _collect(self, job: Job) -> None:
        try:
            value = self._dispatcher.result(job)
        except Exception as exc:
            if job.cancelled:
                self._deliver(Completion(job, Kind.DROPPED))
            elif self._dispatcher.is_task_error(exc):
                cause = getattr(exc, "cause", None)
                self._deliver(Completion(job, Kind.ERROR, exception_info(cause or exc)))
            else:
                self._lost(job, exc)
            return
        self._deliver(Completion(job, Kind.DROPPED if job.cancelled else Kind.RESULT, value))

    def _lost(self, job: Job, exc: BaseException) -> None:
        error = describe_error(exc)
        now = datetime.now(UTC)
        decision = decide(job.attempt, error, self._policy(), now)
        logger.warning(
            "Ray lost attempt %s of task %s[%s]: %s: %s",
            *(job.attempt, job.task_name, job.task_id, type(exc).__name__, exc),
        )
        if isinstance(decision, Retry):
            self._deliver(Completion(job, Kind.LOST, {**error, "attempt": job.attempt}))
            job.attempt += 1
            job.retry_at = time.monotonic() + (decision.at - now).total_seconds()
            with self._lock:
                self._waiting.append(job)
            return
        headline = (error["message"].strip().splitlines() or [""])[0]  # Ray's run on for lines
        lost = WorkerLostError(
            f"Ray lost the worker running the task ({error['exception_class_path']}: "
            f"{headline}); not retried: {decision.reason}."
        )
        self._deliver(Completion(job, Kind.ERROR, exception_info(lost, cause=exc)))

    def _enforce_time_limits(self, now: float) -> None:
        for job in self.jobs:
            if job.cancelled or job.retry_at is not None:
                continue
            elapsed = now - job.started
            if job.hard_timeout and elapsed >= job.hard_timeout:
                if self.cancel(job.number, "timed out") is not None:
                    self._deliver(Completion(job, Kind.HARD_TIMEOUT, job.hard_timeout))
            elif job.soft_timeout and not job.soft_warned and elapsed >= job.soft_timeout:
                job.soft_warned = True
                self._deliver(Completion(job, Kind.SOFT_TIMEOUT, job.soft_timeout))


def exception_info(exc: BaseException, *, cause: BaseException | None = None) -> ExceptionInfo:
    """``exc`` as the ``ExceptionInfo`` Celery's failure handlers take, with a traceback."""
    try:
        raise exc from cause
    except BaseException:
        return ExceptionInfo(sys.exc_info())
