"""The Ray side of the pool in the worker process: one remote call per Celery task run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from celery_bridge.remote import AppSpec, run_traced
from django_ray.runtime import connection
from django_ray.runtime.connection import worker_runtime_env

if TYPE_CHECKING:
    from celery_bridge.completion import Job


class CeleryDispatcher:
    """Submits the tracer of each job to Ray, with Ray's own retries off.

    ``runtime_env`` carries the app's import path and Celery's environment, so
    each app gets Ray worker processes of its own. Ray Core applies the
    connection's runtime_env to every task; only when this dispatcher's differs
    (Ray was already connected by someone else) does each call carry it.
    """

    def __init__(
        self, spec: AppSpec, runtime_env: Mapping[str, Any], ray_options: Mapping[str, Any]
    ) -> None:
        import ray

        self._ray = ray
        self._spec = spec
        own_env = worker_runtime_env(runtime_env)
        self._options = dict(ray_options)
        if own_env != connection.connected_runtime_env:
            self._options["runtime_env"] = own_env
        self._remote = ray.remote(max_retries=0, retry_exceptions=False)(run_traced)

    @property
    def address(self) -> str:
        """The cluster this process is connected to (its GCS address)."""
        return str(self._ray.get_runtime_context().gcs_address)

    def submit(self, job: Job, on_done: Callable[[Any], None]) -> None:
        """Start ``job`` on Ray; ``on_done`` is called from a Ray thread when it ends."""
        options = {**self._options, **job.ray_options}
        ref = self._remote.options(**options).remote(
            self._spec, *job.trace_args, soft_time_limit=job.soft_timeout
        )
        job.ref, job.handle = ref, ref.task_id().hex()
        ref.future().add_done_callback(on_done)

    def ready(self, refs: list[Any]) -> list[Any]:
        """Those of ``refs`` that have finished, without waiting."""
        if not refs:
            return []
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        return list(done)

    def result(self, ref: Any) -> Any:
        """The tracer's ``(failed, result, runtime)``; raises what Ray raised."""
        return self._ray.get(ref)

    def cancel(self, job: Job) -> None:
        """Stop the job's Ray task now, killing its worker process if it is running."""
        if job.ref is not None:
            self._ray.cancel(job.ref, force=True)

    def is_task_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` was raised by our own code on Ray (not a loss of the worker)."""
        exceptions = self._ray.exceptions
        return isinstance(exc, exceptions.RayTaskError) and not isinstance(
            exc, exceptions.TaskCancelledError
        )
