"""The ``ray_core`` dispatcher: one call on Ray per attempt, made through ``runtime.calls``.

An attempt of a task that asks Ray for nothing of its own, and whose attempts so
far were short, runs in a chunk on one of a few warm actors (see
:mod:`~django_ray.runtime.chunking`); any other runs as a plain Ray task, which
Ray schedules by its resources.

Ray's own retries are off: a retry is the worker's decision, recorded in the
row. A loss (the Ray worker or its node died, the call was cancelled) comes
back as a failed ``Outcome`` whose error is Ray's exception, marked lost. If
Ray itself goes away, the attempts in flight stay in flight until
:meth:`RayCoreDispatcher.reset` reconnects, and are then reported lost, once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from django_ray.runtime import connection
from django_ray.runtime.calls import Calls, Ended
from django_ray.runtime.execute import ensure_django, run_packed
from django_ray.runtime.job import Job, Outcome, timeout_error
from django_ray.runtime.losses import Loss, loss_error
from django_ray.runtime.placement import Placement, live_node_resources
from django_ray.runtime.remote import CallOptions, Program, pick

logger = logging.getLogger("django_ray.runtime")

DJANGO_PROGRAM = Program(run=run_packed, warm_up=ensure_django)
"""What a Ray worker runs for the Django worker: one registered task per call."""

# Warm actors for chunks of short attempts (at most the cluster's CPUs): a few are
# enough to keep one worker's short tasks moving; longer tasks never use them.
CHUNK_ACTORS = 4


class RayCoreDispatcher:
    """Submits jobs as Ray Core calls and hands back their outcomes as they finish."""

    runner = "ray_core"
    attempts_outlive_worker = False

    def __init__(
        self, runtime_env: Mapping[str, Any] | None = None, *, address: str | None = None
    ) -> None:
        import ray

        self._ray = ray
        self._address = address
        self._runtime_env = dict(runtime_env or {})
        self._calls = Calls(
            DJANGO_PROGRAM,
            CallOptions(self._runtime_env),
            warm_actors=True,
            chunks=True,
            singles_on_actors=False,
        )
        self._jobs: dict[str, Job] = {}
        self._ray_gone: str | None = None
        self._placement = Placement(lambda: live_node_resources(ray))

    @property
    def statuses(self) -> Mapping[str, str]:
        """``WAITING_FOR_NODE`` for attempts no live node can run (``""`` once one can)."""
        return self._placement.statuses

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    def submit(self, job: Job) -> str:
        """Start the job on Ray; returns the Ray task id (the row's handle), or "" when the
        job waits for a chunk (:meth:`flush` sends it)."""
        if not self._ray.is_initialized():
            # Never let Ray start a cluster of its own here (it would, on first use).
            raise connection.RayUnavailable("not connected to Ray")
        try:
            handle = self._calls.submit(
                job.execution_id,
                job.pack(),
                options=pick(job.options),
                hard_limit=job.time_left(timezone.now()),
                kind=job.task_path,
            )
        except connection.RayUnavailable as exc:
            self._forget(exc.unstarted)
            raise
        self._jobs[job.execution_id] = job
        return handle

    def flush(self) -> dict[str, str]:
        """Send the jobs that wait for a chunk; their Ray task ids, by execution id.

        The warm actors start when the first jobs wait for one (not before: a worker's
        first attempts, and a worker of long tasks, keep the cluster's CPUs to themselves).
        """
        if self._calls.waiting and self._calls.actors and not self._calls.actors.size:
            self._calls.resize(CHUNK_ACTORS)
        try:
            return {str(key): handle for key, handle in self._calls.flush().items()}
        except connection.RayUnavailable as exc:
            self._forget(exc.unstarted)
            raise

    def _forget(self, execution_ids: tuple[Any, ...]) -> None:
        for execution_id in execution_ids:
            self._jobs.pop(str(execution_id), None)

    def cancel(self, execution_id: str) -> None:
        """Stop the attempt on Ray (force: a task stuck in C code is killed too)."""
        self._calls.cancel(execution_id)

    def adopt(self, job: Job) -> bool:
        return False  # a Ray Core task dies with the worker that owned it

    def job_status(self, execution_id: str, attempt: int) -> str | None:
        return None

    def wait(self, timeout: float, at_least: int = 1) -> list[Outcome]:
        """Outcomes of every job finished by now, waiting up to ``timeout`` for the first
        ``at_least`` of them."""
        if not self._jobs:
            return []
        if self._ray_gone or not self._ray.is_initialized():
            raise connection.RayUnavailable(self._ray_gone or "not connected to Ray")
        outcomes = []
        for ended in self._calls.take(timeout, at_least):
            job = self._jobs.get(str(ended.key))
            if job is None:
                continue
            if ended.loss is Loss.RAY_GONE:
                # Not this task's loss: Ray itself is gone. The attempt stays in
                # flight until reset() reconnects and reports it lost, once.
                self._ray_gone = f"Ray Core stopped answering: {ended.error}"
                continue
            del self._jobs[job.execution_id]
            outcomes.append(self._outcome(job, ended))
        self._placement.check(self._jobs)
        return outcomes

    def reset(self) -> list[Outcome]:
        """Connect to Ray again; what was in flight on the old connection is lost."""
        connection.reconnect(self._address, self._runtime_env)  # raises while Ray is down
        self._calls.reset()
        gone = connection.RayUnavailable("Ray went away under the attempt")
        lost = [
            Outcome(
                execution_id=job.execution_id,
                attempt=job.attempt,
                error=loss_error(Loss.RAY_GONE, gone),
                lost=True,
            )
            for job in self._jobs.values()
        ]
        self._jobs.clear()
        self._ray_gone = None
        return lost

    def close(self) -> None:
        self._calls.close()

    def _outcome(self, job: Job, ended: Ended) -> Outcome:
        if ended.returned:
            return Outcome.unpack(job, ended.value)
        assert ended.error is not None or ended.loss is not None
        if ended.loss is Loss.TIMED_OUT:  # the task's own doing: a failure, not a loss
            logger.warning(
                "Attempt %s of execution %s (%s) ran past its time limit of %s s; stopped",
                *(job.attempt, job.execution_id, job.task_path, job.timeout),
            )
            return Outcome(
                execution_id=job.execution_id, attempt=job.attempt, error=timeout_error(job)
            )
        if ended.loss is None:
            assert ended.error is not None
            return Outcome.failure(job, ended.error)  # the program raised (not the task)
        error = ended.error or RuntimeError(str(ended.loss))
        logger.warning(
            "Ray lost attempt %s of execution %s (%s): %s",
            *(job.attempt, job.execution_id, ended.loss, error),
        )
        return Outcome(
            execution_id=job.execution_id,
            attempt=job.attempt,
            error=loss_error(ended.loss, error),
            lost=True,
        )
