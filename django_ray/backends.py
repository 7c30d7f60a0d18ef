"""``RayTaskBackend``: Django's Tasks API over the state tables; a worker runs the rows on Ray."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.tasks import Task, TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued

from django_ray.registry import resolve_task
from django_ray.signing import verify
from django_ray.tasks import RayTask, option_problems

if TYPE_CHECKING:
    from django_ray.lifecycle.enqueue import Payload

# One call of enqueue_many(): the positional and the keyword arguments.
Call = tuple[Sequence[Any], Mapping[str, Any]]


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
        from django_ray.lifecycle import enqueue  # the ORM loads once apps are ready

        self.validate_task(task)
        return self._write(task, [enqueue.payload(task, args, kwargs)])[0]

    def enqueue_many(self, task: Task, calls: Iterable[Call]) -> list[TaskResult]:
        """Enqueue one execution of ``task`` per ``(args, kwargs)`` pair of ``calls``, in one
        INSERT statement on PostgreSQL; the results in the order of the calls.

        Every call is checked as :meth:`enqueue` checks it, and fails with the same error,
        before any row is written; then all rows are written, or none. ``task_enqueued``
        is sent for each result, as :meth:`enqueue` sends it.
        """
        from django_ray.lifecycle import enqueue

        self.validate_task(task)
        return self._write(task, enqueue.payloads(task, calls))

    async def aenqueue_many(self, task: Task, calls: Iterable[Call]) -> list[TaskResult]:
        """See :meth:`enqueue_many`."""
        return await sync_to_async(self.enqueue_many, thread_sensitive=True)(task, calls)

    def _write(self, task: Task, calls: list[Payload]) -> list[TaskResult]:
        from django_ray.lifecycle import enqueue

        rows = enqueue.new_rows(task, calls, backend=self.alias)
        enqueue.write(rows)
        results: list[TaskResult] = [row.to_task_result(task) for row in rows]
        for result in results:
            task_enqueued.send(type(self), task_result=result)
        return results

    def get_result(self, result_id: str) -> TaskResult:
        """The current state of one execution; ``TaskResultDoesNotExist`` for an unknown id."""
        from django_ray.models import TaskExecution

        try:
            row = TaskExecution.objects.get(pk=uuid.UUID(str(result_id)), backend=self.alias)
        except (ValueError, TaskExecution.DoesNotExist):
            raise TaskResultDoesNotExist(result_id) from None
        verify(row)  # what the row names is imported only if enqueue() wrote it
        return row.to_task_result(resolve_task(row.task_path))
