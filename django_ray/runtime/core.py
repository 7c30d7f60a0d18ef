"""The ``ray_core`` dispatcher: one remote call per attempt on Ray's warm worker pool."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django_ray.runtime import connection
from django_ray.runtime.connection import merge_runtime_env, worker_runtime_env
from django_ray.runtime.execute import run_packed
from django_ray.runtime.job import Job, Outcome
from django_ray.tasks import RAY_OPTIONS

logger = logging.getLogger("django_ray.runtime")


class RayCoreDispatcher:
    """Submits jobs as Ray Core tasks and hands back their outcomes as they finish.

    Ray's own retries are off: a retry is the worker's decision, recorded in
    the row. An infrastructure failure (the Ray worker died, the task was
    cancelled, the object was lost) comes back as a failed ``Outcome`` whose
    error is the Ray exception, like any other.
    """

    runner = "ray_core"

    def __init__(
        self, runtime_env: Mapping[str, Any] | None = None, *, address: str | None = None
    ) -> None:
        import ray

        self._ray = ray
        self._address = address
        self._lost_errors = (ray.exceptions.RaySystemError, ray.exceptions.LocalRayletDiedError)
        self._runtime_env = dict(runtime_env or {})
        # Ray Core applies the runtime_env given at connect time to every task;
        # only if this dispatcher's differs (settings changed since) does each
        # call carry its own.
        own_env = worker_runtime_env(self._runtime_env)
        self._call_env = None if own_env == connection.connected_runtime_env else own_env
        self._remote = ray.remote(max_retries=0, retry_exceptions=False)(run_packed)
        self._in_flight: dict[Any, Job] = {}
        self._refs: dict[str, Any] = {}

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def submit(self, job: Job) -> str:
        """Start the job on Ray; returns the Ray task id (the row's handle)."""
        if not self._ray.is_initialized():
            # Never let Ray start a cluster of its own here (it would, on first use).
            raise connection.RayUnavailable("not connected to Ray")
        remote = self._remote
        options = self.ray_options(job.options)
        if options:
            remote = remote.options(**options)
        try:
            ref = remote.remote(job.pack())
        except self._lost_errors as exc:
            raise connection.RayUnavailable(f"Ray Core refused a submission: {exc}") from exc
        self._in_flight[ref] = job
        self._refs[job.execution_id] = ref
        return str(ref.task_id().hex())

    def cancel(self, execution_id: str) -> None:
        """Stop the attempt on Ray (force: a task stuck in C code is killed too)."""
        ref = self._refs.get(execution_id)
        if ref is not None:
            self._ray.cancel(ref, force=True)

    def ray_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The task's Ray options, with its runtime_env merged over the global one."""
        ray_options = {name: options[name] for name in RAY_OPTIONS if name in options}
        if "resources" in ray_options:
            ray_options["resources"] = dict(ray_options["resources"])
        if "runtime_env" in ray_options:
            ray_options["runtime_env"] = worker_runtime_env(
                merge_runtime_env(self._runtime_env, ray_options["runtime_env"])
            )
        elif self._call_env is not None:
            ray_options["runtime_env"] = self._call_env
        return ray_options

    def reset(self) -> list[Outcome]:
        """Connect to Ray again; what was in flight on the old connection is lost."""
        connection.reconnect(self._address, self._runtime_env)  # raises while Ray is down
        lost = [
            Outcome.failure(
                job, connection.RayUnavailable("Ray went away under the attempt"), lost=True
            )
            for job in self._in_flight.values()
        ]
        self._in_flight.clear()
        self._refs.clear()
        self._remote = self._ray.remote(max_retries=0, retry_exceptions=False)(run_packed)
        return lost

    def wait(self, timeout: float, at_least: int = 1) -> list[Outcome]:
        """Outcomes of every job finished by now, waiting up to ``timeout`` for the first
        ``at_least`` of them."""
        if not self._in_flight:
            return []
        if not self._ray.is_initialized():
            raise connection.RayUnavailable("not connected to Ray")
        refs = list(self._in_flight)
        try:
            ready, _ = self._ray.wait(refs, num_returns=min(at_least, len(refs)), timeout=timeout)
            if not ready:
                return []
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        except self._lost_errors as exc:
            raise connection.RayUnavailable(f"Ray Core stopped answering: {exc}") from exc
        try:
            packed = self._ray.get(ready)  # one call for the whole batch
        except self._lost_errors as exc:
            raise connection.RayUnavailable(f"Ray Core stopped answering: {exc}") from exc
        except Exception:  # one of them was lost by Ray: sort them out one by one
            return [self._collect(ref) for ref in ready]
        pairs = zip(ready, packed, strict=True)
        return [Outcome.unpack(self._forget(ref), outcome) for ref, outcome in pairs]

    def _collect(self, ref: Any) -> Outcome:
        job = self._in_flight[ref]
        try:
            packed = self._ray.get(ref)
        except self._lost_errors as exc:
            # Not this task's loss: Ray itself is gone. The attempt stays in
            # flight until reset() reconnects and reports it lost, once.
            raise connection.RayUnavailable(f"Ray Core stopped answering: {exc}") from exc
        except Exception as exc:  # Ray's infrastructure errors: worker died, cancelled, lost
            self._forget(ref)
            logger.warning(
                "Ray lost attempt %s of execution %s: %s", job.attempt, job.execution_id, exc
            )
            return Outcome.failure(job, exc, lost=True)
        return Outcome.unpack(self._forget(ref), packed)

    def _forget(self, ref: Any) -> Job:
        job = self._in_flight.pop(ref)
        self._refs.pop(job.execution_id, None)
        return job
