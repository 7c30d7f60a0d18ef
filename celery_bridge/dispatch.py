"""The Ray side of the pool in the worker process: one remote call per Celery task run."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from celery_bridge.remote import AppSpec, WarmWorker, run_packed
from django_ray.runtime import connection
from django_ray.runtime.connection import worker_runtime_env

if TYPE_CHECKING:
    from celery_bridge.completion import Job

logger = logging.getLogger("celery_bridge")

# After an actor failed to start, how long before the pool tries to start another.
START_BACKOFF_SECONDS = 30.0


class CeleryDispatcher:
    """Submits the tracer of each job to Ray, with Ray's own retries off.

    A task that asks Ray for nothing of its own (no ``ray_options``, none for
    all tasks) runs on one of the pool's warm actors when one is free; any
    other runs as a plain Ray task. Either way it is one call on Ray per run.

    ``runtime_env`` carries the app's import path and Celery's environment, so
    each app gets Ray worker processes of its own. Ray Core applies the
    connection's runtime_env to every task; only when this dispatcher's differs
    (Ray was already connected by someone else) does each call carry it.
    """

    def __init__(
        self,
        spec: AppSpec,
        runtime_env: Mapping[str, Any],
        ray_options: Mapping[str, Any],
        *,
        warm_actors: bool = True,
    ) -> None:
        import ray

        self._ray = ray
        self._spec = spec
        own_env = worker_runtime_env(runtime_env)
        self._options = dict(ray_options)
        env_option = {} if own_env == connection.connected_runtime_env else {"runtime_env": own_env}
        self._options.update(env_option)
        self._remote = ray.remote(max_retries=0, retry_exceptions=False)(run_packed)
        self._lock = threading.Lock()
        self._actors = WarmActors(spec, env_option) if warm_actors and not ray_options else None

    @property
    def uses_actors(self) -> bool:
        return self._actors is not None

    @property
    def address(self) -> str:
        """The cluster this process is connected to (its GCS address)."""
        return str(self._ray.get_runtime_context().gcs_address)

    def resize(self, size: int) -> None:
        """Keep ``size`` warm actors (the pool's limit); extra ones go once idle."""
        if self._actors is not None:
            self._actors.resize(size)

    def submit(self, job: Job, on_done: Callable[[Job, Any], None]) -> None:
        """Start ``job`` on Ray; ``on_done(job, future)`` is called from a Ray thread
        when it ends (at once if it already has)."""
        packed = (*job.trace_args, job.soft_timeout)
        actor = None if job.ray_options or self._actors is None else self._actors.take()
        if actor is not None:
            try:
                ref = actor.run.remote(packed)
            except BaseException:
                self._actors.give_back(actor)  # type: ignore[union-attr]
                raise
        else:
            options = {**self._options, **job.ray_options}
            ref = self._remote.options(**options).remote(self._spec, packed)
        future = ref.future()
        job.ref, job.handle, job.actor, job.future = ref, ref.task_id().hex(), actor, future
        future.add_done_callback(lambda done: on_done(job, done))

    def result(self, job: Job) -> Any:
        """The tracer's ``(failed, result, runtime)``; raises what Ray raised.

        The job's actor goes back to the pool, unless it died under the job.
        Called from Ray's callback thread: nothing here may wait on Ray.
        """
        actor = self._take_actor(job)
        if actor is None or self._actors is None:
            return job.future.result()
        try:
            value = job.future.result()
        except self._ray.exceptions.RayActorError:
            self._actors.drop(actor)  # it died (or is out of reach): a new one replaces it
            raise
        except BaseException:
            self._actors.give_back(actor)
            raise
        self._actors.give_back(actor)
        return value

    def cancel(self, job: Job) -> None:
        """Stop the job's Ray task now, killing its worker process if it is running."""
        actor = self._take_actor(job)
        if actor is not None and self._actors is not None:
            self._actors.kill(actor)
        elif job.ref is not None:
            self._ray.cancel(job.ref, force=True)

    def _take_actor(self, job: Job) -> Any:
        """The job's actor, once: whoever takes it (outcome or cancel) accounts for it."""
        with self._lock:
            actor, job.actor = job.actor, None
        return actor

    def is_task_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` was raised by our own code on Ray (not a loss of the worker)."""
        exceptions = self._ray.exceptions
        return isinstance(exc, exceptions.RayTaskError) and not isinstance(
            exc, exceptions.TaskCancelledError
        )


class WarmActors:
    """The pool's actors: started ahead of the tasks, each running one task at a time.

    An actor holds no CPU while it lives (Ray's default for actors), so it
    never keeps a plain Ray task from running; ``SPREAD`` places them across
    the cluster's nodes. There are never more actors than the cluster has
    CPUs (as it was when last resized): beyond that, tasks run as plain Ray
    tasks, which Ray queues by CPU. One that died or was killed is replaced.
    """

    def __init__(self, spec: AppSpec, options: Mapping[str, Any]) -> None:
        import ray

        self._ray = ray
        self._spec = spec
        self._class = ray.remote(WarmWorker).options(
            max_restarts=0,
            max_task_retries=0,
            scheduling_strategy="SPREAD",
            **options,
        )
        self._lock = threading.Lock()
        self._size = 0
        self._idle: list[Any] = []
        self._busy = 0
        self._starting: dict[Any, Any] = {}  # ready ref -> actor
        self._doomed: list[Any] = []  # to kill from a thread that may call Ray
        self._next_start = 0.0

    def resize(self, size: int) -> None:
        cpus = int(self._ray.cluster_resources().get("CPU", 0))
        with self._lock:
            self._size = min(size, cpus)
            while self._idle and self._count() > self._size:
                self._doomed.append(self._idle.pop())
            self._reap()
            self._start_missing()

    def take(self) -> Any | None:
        """An idle actor, marked busy; None when none is ready (the caller uses a task)."""
        with self._lock:
            self._reap()
            self._promote_started()
            if not self._idle:
                self._start_missing()
                return None
            self._busy += 1
            return self._idle.pop()

    def give_back(self, actor: Any) -> None:
        """A busy actor's task ended: idle again, or killed later if the pool shrank.

        Safe from Ray's callback thread, where a call into Ray would never return.
        """
        with self._lock:
            self._busy -= 1
            if self._count() < self._size:
                self._idle.append(actor)
            else:
                self._doomed.append(actor)

    def drop(self, actor: Any) -> None:
        """A busy actor died: killed later (in case it is only out of reach), then replaced."""
        with self._lock:
            self._busy -= 1
            self._doomed.append(actor)

    def kill(self, actor: Any) -> None:
        """Kill a busy actor now (its task was cancelled); it is replaced.

        Not from Ray's callback thread: see ``give_back``.
        """
        with self._lock:
            self._busy -= 1
            self._ray.kill(actor, no_restart=True)

    def _reap(self) -> None:
        for actor in self._doomed:
            self._ray.kill(actor, no_restart=True)
        self._doomed.clear()

    def _count(self) -> int:
        return len(self._idle) + self._busy + len(self._starting)

    def _promote_started(self) -> None:
        if not self._starting:
            return
        refs = list(self._starting)
        started, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in started:
            actor = self._starting.pop(ref)
            try:
                self._ray.get(ref)
            except Exception as exc:
                self._next_start = time.monotonic() + START_BACKOFF_SECONDS
                logger.warning(
                    "django_ray pool: a warm Ray actor failed to start (%s); tasks run as "
                    "plain Ray tasks meanwhile, and another start is tried in %.0f s",
                    *(exc, START_BACKOFF_SECONDS),
                )
                continue
            if self._count() < self._size:
                self._idle.append(actor)
            else:
                self._ray.kill(actor, no_restart=True)

    def _start_missing(self) -> None:
        if time.monotonic() < self._next_start:
            return
        for _ in range(self._size - self._count()):
            actor = self._class.remote(self._spec)
            self._starting[actor.__ray_ready__.remote()] = actor  # type: ignore[union-attr]
