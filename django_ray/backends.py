"""``RayTaskBackend``: Django's Tasks API over the state tables; a worker runs the rows on Ray."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TASK_REFRESH_ATTRS, TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued

from django_ray.payloads import to_json
from django_ray.registry import resolve_task
from django_ray.tasks import RayTask, option_problems
from django_ray.worker.wakeup import notify_ready

if TYPE_CHECKING:
    from django_ray.models import TaskExecution


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
        """Write one READY row (inside the caller's transaction, if any) and return its result."""
        from django_ray.models import TaskExecution

        self.validate_task(task)
        row = TaskExecution.objects.create(
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
        notify_ready(row.queue_name)
        result = to_task_result(row, task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The current state of one execution; ``TaskResultDoesNotExist`` for an unknown id."""
        from django_ray.models import TaskExecution

        try:
            row = TaskExecution.objects.get(pk=uuid.UUID(str(result_id)), backend=self.alias)
        except (ValueError, TaskExecution.DoesNotExist):
            raise TaskResultDoesNotExist(result_id) from None
        return to_task_result(row, resolve_task(row.task_path))


def to_task_result(row: TaskExecution, task: Task) -> TaskResult:
    """Django's view of a row: status, timestamps, errors per attempt, and the value."""
    stored = (row.priority, row.queue_name, row.run_after, row.backend)
    if stored != (task.priority, task.queue_name, task.run_after, task.backend):
        # The queue or backend may have been removed from settings since the
        # row was written; the stored result is still worth showing.
        with contextlib.suppress(InvalidTask):
            task = task.using(
                priority=row.priority,
                queue_name=row.queue_name,
                run_after=row.run_after,
                backend=row.backend,
            )
    result = RayTaskResult(
        task=task,
        id=str(row.pk),
        status=TaskResultStatus(row.state),
        enqueued_at=row.enqueued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.last_attempted_at,
        args=row.args,
        kwargs=row.kwargs,
        backend=row.backend,
        errors=[
            TaskError(
                exception_class_path=error["exception_class_path"], traceback=error["traceback"]
            )
            for error in row.errors
        ],
        worker_ids=list(row.worker_ids),
        result_reference=row.result_reference,
    )
    if row.state == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", row.result_data)
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class RayTaskResult(TaskResult):  # type: ignore[misc]  # the stubs miss that TaskResult is frozen
    """Django's ``TaskResult``; a value stored outside the row loads when first read.

    ``return_value`` of a result kept only as a digest raises an error that
    says so; a stored payload that is missing or corrupted raises an error
    naming the execution and the location, never returns a wrong value.
    """

    result_reference: dict[str, Any] | None = None
    _loaded: bool = field(init=False, default=False)

    @property
    def return_value(self) -> Any:
        if (
            self.status == TaskResultStatus.SUCCESSFUL
            and self.result_reference is not None
            and not self._loaded
        ):
            from django_ray.conf import get_settings
            from django_ray.results import load_result

            value = load_result(
                self.result_reference, execution_id=self.id, settings=get_settings()
            )
            object.__setattr__(self, "_return_value", value)
            object.__setattr__(self, "_loaded", True)
        return TaskResult.return_value.fget(self)  # type: ignore[attr-defined]

    def refresh(self) -> None:
        self._copy_from(self.task.get_backend().get_result(self.id))

    async def arefresh(self) -> None:
        self._copy_from(await self.task.get_backend().aget_result(self.id))

    def _copy_from(self, fresh: Any) -> None:
        for attr in (*TASK_REFRESH_ATTRS, "result_reference", "_loaded"):
            object.__setattr__(self, attr, getattr(fresh, attr))
