"""What runs inside a Ray worker process: set Django up once, run one registered task."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django_ray.runtime.job import Job, Outcome

if TYPE_CHECKING:
    from django.tasks import Task, TaskContext


def ensure_django() -> None:
    """Set Django up once per Ray worker process (cheap on every later call)."""
    from django.apps import apps

    if apps.ready:
        return
    if "DJANGO_SETTINGS_MODULE" not in os.environ:
        raise RuntimeError(
            "DJANGO_SETTINGS_MODULE is not set in this Ray worker; django-ray passes it "
            "through the job's runtime_env, so the driver must have it set."
        )
    import django

    django.setup()


def run_job(job: Job) -> Outcome:
    """Run one attempt and return its outcome; task errors are data, never raised to Ray."""
    try:
        ensure_django()
        from django_ray.conf import get_settings
        from django_ray.payloads import to_json
        from django_ray.registry import resolve_task
        from django_ray.results import encode_result

        task = resolve_task(job.task_path)
        if job.takes_context:
            value = task.call(_context(job, task), *job.args, **job.kwargs)
        else:
            value = task.call(*job.args, **job.kwargs)
        value = to_json(value, task_path=job.task_path, where="the return value")
        # Large values are written here, where they were produced, so the payload
        # crosses the network once; a storage failure fails the attempt.
        stored = encode_result(
            value, execution_id=job.execution_id, attempt=job.attempt, settings=get_settings()
        )
    except KeyboardInterrupt:
        raise  # how Ray cancels a task: let Ray see it
    except BaseException as exc:
        return dataclasses.replace(Outcome.failure(job, exc), node=node_id())
    return Outcome(
        execution_id=job.execution_id,
        attempt=job.attempt,
        value=stored.inline,
        reference=stored.reference,
        node=node_id(),
    )


_node: list[str] = []  # once known: a process never changes node


def node_id() -> str:
    """The Ray node this process runs on ("" outside Ray, e.g. a Ray Job's driver)."""
    if _node:
        return _node[0]
    import ray

    if not ray.is_initialized():
        return ""
    try:
        found = str(ray.get_runtime_context().get_node_id() or "")
    except Exception:  # no node to tell: the attempt's node stays unknown
        return ""
    _node.append(found)
    return found


def run_packed(packed: Sequence[Any]) -> tuple[Any, Any, Any, str]:
    """Ray Core's entry point: ``run_job`` on a packed ``Job``, its ``Outcome`` packed."""
    return run_job(Job.unpack(packed)).pack()


def _context(job: Job, task: Task) -> TaskContext:
    from django.tasks import TaskContext, TaskResult, TaskResultStatus

    result: TaskResult = TaskResult(
        task=task,
        id=job.execution_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=None,
        last_attempted_at=job.started_at,
        args=job.args,
        kwargs=job.kwargs,
        backend=job.backend,
        errors=[],
        worker_ids=list(job.worker_ids),
    )
    return TaskContext(task_result=result)
