"""The pool's tasks on Ray: each Celery task run across its Ray attempts, over ``runtime.calls``.

The tracer decides success or failure on Ray, as under prefork; this module only
turns how each call ended into a :class:`Completion` for the pool to hand to
Celery's callbacks. A call lost to infrastructure (its Ray worker or node died)
goes to django-ray's retry policy: run again after the backoff, or, once the
policy gives up, reported to Celery as ``WorkerLostError``.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError

from celery_bridge.remote import AppSpec, program
from django_ray.lifecycle.errors import error_data, headline
from django_ray.retry import Retry, RetryPolicy, decide
from django_ray.runtime.calls import Calls, Ended
from django_ray.runtime.losses import Loss, loss_error
from django_ray.runtime.remote import NEVER, CallOptions, Recycle

logger = logging.getLogger("celery_bridge")


class Kind(enum.Enum):
    RESULT = "result"  # the tracer's (failed, result, runtime): Celery's on_success
    ERROR = "error"  # an ExceptionInfo for Celery's on_failure (lost for good, or broken setup)
    LOST = "lost"  # the Ray worker died; the run waits for its next attempt
    SOFT_TIMEOUT = "soft timeout"  # Celery logs a warning; the task got SoftTimeLimitExceeded
    HARD_TIMEOUT = "hard timeout"  # killed on Ray; Celery records TimeLimitExceeded
    DROPPED = "dropped"  # a terminated run ended; Celery was told already


# After these the run holds no slot any more.
FINAL = frozenset({Kind.RESULT, Kind.ERROR, Kind.HARD_TIMEOUT, Kind.DROPPED})


@dataclass(eq=False, slots=True, kw_only=True)
class Job:
    """One Celery task run through the pool, across its Ray attempts."""

    number: int
    trace_args: tuple[Any, ...]  # fast_trace_task's: name, id, request, body, type, encoding
    callback: Callable[..., Any] | None = None
    error_callback: Callable[..., Any] | None = None
    timeout_callback: Callable[..., Any] | None = None
    soft_timeout: float | None = None
    hard_timeout: float | None = None
    ray_options: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1  # Ray attempts of this run (a loss is retried by the policy)
    handle: str = ""  # the Ray task id of the current attempt
    pid: int = 0  # what Celery was given as the pid (inspect active, revoke --terminate)
    cancelled: str = ""  # why Celery was already told the outcome: terminated

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
    records: tuple[dict[str, Any], ...] = ()  # log records of the run on Ray


class Runs:
    """Submits each job's tracer to Ray and reports every change through ``deliver``.

    ``deliver`` is called from Ray's callback thread (and the calls' watcher),
    where nothing may call into Ray: it must only queue the completion.
    """

    def __init__(
        self,
        spec: AppSpec,
        runtime_env: Mapping[str, Any],
        ray_options: Mapping[str, Any],
        *,
        deliver: Callable[[Completion], None],
        policy: Callable[[], RetryPolicy],
        warm_actors: bool = True,
        recycle: Recycle = NEVER,
    ) -> None:
        self._deliver = deliver
        self._policy = policy
        self._ray_options = ray_options
        self._lock = threading.Lock()
        self._jobs: dict[Hashable, Job] = {}
        # With Ray options for every task, no task may run on the pool's plain actors.
        # One actor per slot, as prefork has one process per slot (``-c N``).
        self.calls = Calls(
            program(spec),
            CallOptions(runtime_env, defaults=ray_options),
            warm_actors=warm_actors and not ray_options,
            on_end=self._ended,
            on_soft_limit=self._soft_limit,
            recycle=recycle,
            cpu_bound_actors=False,
            chunks=True,
        )

    def switch(self, spec: AppSpec, runtime_env: Mapping[str, Any]) -> None:
        """Run later jobs with the app as ``spec`` has it now, in fresh Ray worker processes."""
        self.calls.switch(program(spec), CallOptions(runtime_env, defaults=self._ray_options))

    def pid(self, number: int) -> int:
        """The Ray worker process that runs the job now, if it runs on a warm actor (else 0)."""
        return self.calls.pid(number)

    @property
    def uses_actors(self) -> bool:
        return self.calls.actors is not None

    @property
    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def start(self, job: Job, *, not_before: float = 0.0) -> bool:
        """Run the job on Ray (its next attempt, after ``not_before``); True when it waits
        for :meth:`flush`, to go in a chunk with others."""
        with self._lock:
            self._jobs[job.number] = job
        try:
            job.handle = self.calls.submit(
                job.number,
                (*job.trace_args, job.soft_timeout),
                options=job.ray_options,
                soft_limit=job.soft_timeout,
                hard_limit=job.hard_timeout,
                not_before=not_before,
                kind=job.task_name,
            )
        except Exception as exc:  # Ray unreachable: a loss like any other
            self._lost(job, exc)
            return False
        return not job.handle and not not_before

    def flush(self) -> None:
        """Send the jobs that wait for a chunk (a job that cannot be sent ends lost)."""
        sent = self.calls.flush()
        with self._lock:
            for number, handle in sent.items():
                job = self._jobs.get(number)
                if job is not None:
                    job.handle = handle

    def terminate(self, number: int) -> bool:
        """Revoke with terminate: stop the job on Ray (Celery reports it revoked itself)."""
        with self._lock:
            job = self._jobs.get(number)
            if job is None or job.cancelled:
                return False
            job.cancelled = "terminated"
        return self.calls.cancel(number)

    def terminate_all(self) -> None:
        for job in self.jobs:
            self.terminate(job.number)

    def _ended(self, ended: Ended) -> None:
        with self._lock:
            job = self._jobs.get(ended.key)
        if job is None:
            return
        if job.cancelled:
            self._finish(Completion(job, Kind.DROPPED))
        elif ended.returned:
            failed, result, runtime, records = ended.value
            self._finish(Completion(job, Kind.RESULT, (failed, result, runtime), tuple(records)))
        elif ended.loss is Loss.TIMED_OUT:
            self._finish(Completion(job, Kind.HARD_TIMEOUT, job.hard_timeout))
        elif ended.loss is None:  # our code raised on Ray (the app could not be set up)
            assert ended.error is not None
            cause = getattr(ended.error, "cause", None) or ended.error
            self._finish(Completion(job, Kind.ERROR, exception_info(cause)))
        else:
            self._lost(job, ended.error or RuntimeError(str(ended.loss)), ended.loss)

    def _finish(self, completion: Completion) -> None:
        """Deliver a final completion, then forget the job (in that order: a draining pool
        waits while either holds it)."""
        self._deliver(completion)
        with self._lock:
            if self._jobs.get(completion.job.number) is completion.job:
                del self._jobs[completion.job.number]

    def _soft_limit(self, key: Hashable) -> None:
        with self._lock:
            job = self._jobs.get(key)
        if job is not None:
            self._deliver(Completion(job, Kind.SOFT_TIMEOUT, job.soft_timeout))

    def _lost(self, job: Job, exc: BaseException, loss: Loss = Loss.RAY_GONE) -> None:
        error = loss_error(loss, exc) if loss else error_data(exc)
        now = datetime.now(UTC)
        decision = decide(job.attempt, error, self._policy(), now)
        logger.warning(
            "Ray lost attempt %s of task %s[%s] (%s): %s: %s",
            *(job.attempt, job.task_name, job.task_id, loss, type(exc).__name__, exc),
        )
        if isinstance(decision, Retry):
            self._deliver(Completion(job, Kind.LOST, {**error, "attempt": job.attempt}))
            job.attempt += 1
            # Started by the calls' watcher (never from Ray's callback thread, where this runs).
            delay = max((decision.at - now).total_seconds(), 0.0)
            self.start(job, not_before=time.monotonic() + delay)
            return
        lost = WorkerLostError(
            f"Ray lost the worker running the task ({error['exception_class_path']}: "
            f"{headline(error)}); not retried: {decision.reason}."
        )
        self._finish(Completion(job, Kind.ERROR, exception_info(lost, cause=exc)))


def exception_info(exc: BaseException, *, cause: BaseException | None = None) -> ExceptionInfo:
    """``exc`` as the ``ExceptionInfo`` Celery's failure handlers take, with a traceback."""
    try:
        raise exc from cause
    except BaseException:
        return ExceptionInfo(sys.exc_info())
