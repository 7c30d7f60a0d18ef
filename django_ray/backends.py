"""``RayTaskBackend``: Django's Tasks API over the state tables; a worker runs the rows on Ray."""

from __future__ import annotations

import uuid
from typing import Any

from django.tasks import Task, TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued

from django_ray.payloads import to_json
from django_ray.registry import resolve_task
from django_ray.signing import sign, verify
from django_ray.tasks import RayTask, option_problems
from django_ray.worker.wakeup import notify_ready


class RayTaskBackend(BaseTaskBackend):
    """Stores each enqueued task as a row; ``django_ray_worker`` runs it on Ray."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    task_class = RayTask

    def validate_task(self, task: Task) -> None:
        """Django's checks, then the task's Ray options and retry overrides."""
        super().validate_task(task)
        problems = option_problems(task)
        if problems:
            raise InvalidTask(f"Task {task.module_path}: {'; '.join(problems)}.")

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Write one READY row (inside the caller's transaction, if any) and return its result.

        The row is signed (see :mod:`django_ray.signing`): workers run only what was
        written here.
        """
        from django_ray.models import TaskExecution

        self.validate_task(task)
        row = TaskExecution(
            id=uuid.uuid4(),
            backend=self.alias,
            task_path=task.module_path,
            args=to_json(list(args), task_path=task.module_path, where="args"),
            kwargs=to_json(dict(kwargs), task_path=task.module_path, where="kwargs"),
            queue_name=task.queue_name,
            priority=task.priority,
            run_after=task.run_after,
            takes_context=task.takes_context,
            options=task.stored_options() if isinstance(task, RayTask) else {},
        )
        row.signature = sign(row)
        row.save(force_insert=True)
        notify_ready(row.queue_name)
        result = row.to_task_result(task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The current state of one execution; ``TaskResultDoesNotExist`` for an unknown id."""
        from django_ray.models import TaskExecution

        try:
            row = TaskExecution.objects.get(pk=uuid.UUID(str(result_id)), backend=self.alias)
        except (ValueError, TaskExecution.DoesNotExist):
            raise TaskResultDoesNotExist(result_id) from None
        verify(row)  # what the row names is imported only if enqueue() wrote it
        return row.to_task_result(resolve_task(row.task_path))
