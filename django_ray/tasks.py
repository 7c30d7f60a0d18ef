"""``RayTask``: Django's ``Task`` plus the Ray options and retry overrides of one task.

``RayTaskBackend.task_class`` is ``RayTask``, so Django's own decorator takes
the options::

    @task(num_cpus=2, resources={"gpu_box": 1}, max_attempts=5, timeout=600)
    def render(scene_id): ...

    render.using(num_cpus=4, timeout=60).enqueue(7)   # per call
    render.enqueue_many([((7,), {}), ((8,), {})])   # many rows, one statement
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from numbers import Real
from typing import Any

from django.tasks import Task, TaskResult
from django.tasks.exceptions import InvalidTask

from django_ray.retry import MAX_ATTEMPTS

# Options handed to Ray (Ray Core: .options(); Ray Jobs: the entrypoint's resources).
RAY_OPTIONS = ("num_cpus", "num_gpus", "memory", "resources", "runtime_env", "max_calls")
# Options read by django-ray's retry policy.
RETRY_OPTIONS = ("max_attempts", "retry_backoff_seconds")
# The time limit of each attempt, in seconds (0: none, whatever TASK_TIMEOUT_SECONDS says).
LIMIT_OPTIONS = ("timeout",)
OPTIONS = RAY_OPTIONS + RETRY_OPTIONS + LIMIT_OPTIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class RayTask(Task):
    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None
    resources: Mapping[str, float] | None = None
    runtime_env: Mapping[str, Any] | None = None
    max_calls: int | None = None
    max_attempts: int | None = None
    retry_backoff_seconds: int | None = None
    timeout: int | None = None

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: datetime | None = None,
        backend: str | None = None,
        **options: Any,
    ) -> RayTask:
        """Django's ``using()``, which also takes any option in ``OPTIONS``."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise InvalidTask(
                f"Task {self.module_path}: unknown option(s) {', '.join(unknown)}; "
                f"options are {', '.join(OPTIONS)}."
            )
        task: RayTask = Task.using(  # type: ignore[assignment]  # replace() keeps the class
            self, priority=priority, queue_name=queue_name, run_after=run_after, backend=backend
        )
        return dataclasses.replace(task, **options) if options else task

    def enqueue_many(
        self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskResult]:
        """Enqueue one execution per ``(args, kwargs)`` pair, all or none; see
        ``RayTaskBackend.enqueue_many``. On another backend (a test's dummy backend,
        say), each pair goes through that backend's ``enqueue()`` in turn."""
        backend = self.get_backend()
        if hasattr(backend, "enqueue_many"):
            return list(backend.enqueue_many(self, calls))
        return [backend.enqueue(self, list(args), dict(kwargs)) for args, kwargs in calls]

    async def aenqueue_many(
        self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskResult]:
        """See :meth:`enqueue_many`."""
        backend = self.get_backend()
        if hasattr(backend, "aenqueue_many"):
            return list(await backend.aenqueue_many(self, calls))
        return [await backend.aenqueue(self, list(args), dict(kwargs)) for args, kwargs in calls]

    def stored_options(self) -> dict[str, Any]:
        """The options that are set, as stored on each execution row."""
        values = {name: getattr(self, name) for name in OPTIONS}
        return {name: _plain(value) for name, value in values.items() if value is not None}


def option_problems(task: Task) -> list[str]:
    """Why the task's options cannot be given to Ray (empty when they can)."""
    if not isinstance(task, RayTask):
        return []
    problems = []
    for name in ("num_cpus", "num_gpus"):
        value = getattr(task, name)
        if value is not None and (not _is_number(value) or value < 0):
            problems.append(f"{name} must be a number >= 0; got {value!r}")
    for name in ("memory", "max_calls", "max_attempts"):
        value = getattr(task, name)
        if value is not None and (not _is_int(value) or value < 1):
            problems.append(f"{name} must be an integer >= 1; got {value!r}")
    attempts = task.max_attempts
    if attempts is not None and _is_int(attempts) and attempts > MAX_ATTEMPTS:
        problems.append(f"max_attempts must be at most {MAX_ATTEMPTS}; got {attempts!r}")
    backoff = task.retry_backoff_seconds
    if backoff is not None and (not _is_int(backoff) or backoff < 0):
        problems.append(f"retry_backoff_seconds must be an integer >= 0; got {backoff!r}")
    timeout = task.timeout
    if timeout is not None and (not _is_int(timeout) or timeout < 0):
        problems.append(f"timeout must be an integer number of seconds >= 0; got {timeout!r}")
    resources = task.resources
    if resources is not None and not (
        isinstance(resources, Mapping)
        and all(isinstance(k, str) and _is_number(v) and v >= 0 for k, v in resources.items())
    ):
        problems.append(f"resources must map names to numbers >= 0; got {resources!r}")
    if task.runtime_env is not None and not isinstance(task.runtime_env, Mapping):
        problems.append(f"runtime_env must be a dict; got {task.runtime_env!r}")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value
