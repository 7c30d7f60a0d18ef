"""The first state of an execution: READY rows made, checked and signed, then written at once.

Every call of a batch is checked before any row is written, so a batch is written
whole or not at all. On PostgreSQL the rows go in one ``INSERT`` (see
:func:`django_ray.lifecycle.postgres.insert_ready`), and the table's trigger sends
one ``NOTIFY`` for it; elsewhere ``bulk_create()`` writes them inside one transaction.
"""

from __future__ import annotations

import datetime
import functools
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.db import connections, router
from django.db.models.base import ModelState
from django.tasks import Task
from django.utils import timezone

from django_ray.lifecycle import postgres
from django_ray.models import TaskExecution
from django_ray.payloads import to_json
from django_ray.signing import sign_all
from django_ray.tasks import RayTask

# Set here for each row, and for each task; every other column takes its model default.
_PER_ROW = ("id", "args", "kwargs", "enqueued_at", "signature")
_PER_TASK = (
    *("backend", "task_path", "queue_name", "priority", "run_after", "takes_context", "options"),
)
_ONE_MICROSECOND = datetime.timedelta(microseconds=1)

Payload = tuple[list[Any], dict[str, Any]]


def payload(task: Task, args: Any, kwargs: Any) -> Payload:
    """The arguments of one call as JSON, or :class:`~django_ray.payloads.PayloadError`."""
    path = task.module_path
    return to_json(list(args), task_path=path, where="args"), to_json(
        dict(kwargs), task_path=path, where="kwargs"
    )


def payloads(task: Task, calls: Iterable[Any]) -> list[Payload]:
    """The arguments of every ``(args, kwargs)`` call, all checked before any is returned.

    An error is the one :func:`payload` raises for that call, with a note naming the call;
    a call that is no such pair raises ``TypeError``.
    """
    checked = []
    for index, call in enumerate(calls):
        try:
            args, kwargs = call
        except (TypeError, ValueError):
            args = kwargs = None
        if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
            raise TypeError(
                f"Task {task.module_path}: each call is an (args, kwargs) pair, args a list "
                f"or tuple and kwargs a dict; call {index} is {call!r}."
            )
        try:
            checked.append(payload(task, args, kwargs))
        except TypeError as exc:
            exc.add_note(f"In call {index} of enqueue_many().")
            raise
    return checked


def new_rows(task: Task, calls: list[Payload], *, backend: str) -> list[TaskExecution]:
    """One signed, unsaved READY row of ``task`` per checked call, in order.

    The rows of one batch are stamped a microsecond apart, so that they are claimed
    in the order of the calls.
    """
    values = dict(_static_defaults())
    values.update(
        backend=backend,
        task_path=task.module_path,
        queue_name=task.queue_name,
        priority=task.priority,
        run_after=task.run_after,
        takes_context=task.takes_context,
        options=task.stored_options() if isinstance(task, RayTask) else {},
    )
    made = _made_defaults()
    ids, now = os.urandom(16 * len(calls)), timezone.now()
    rows = []
    for index, (args, kwargs) in enumerate(calls):
        row = TaskExecution.__new__(TaskExecution)
        row.__dict__.update(values)
        for name, make in made:
            row.__dict__[name] = make()
        row.id = uuid.UUID(bytes=ids[16 * index : 16 * index + 16], version=4)
        row.args, row.kwargs = args, kwargs
        row.enqueued_at = now + index * _ONE_MICROSECOND
        row._state = ModelState()
        rows.append(row)
    sign_all(rows)
    return rows


def write(rows: list[TaskExecution]) -> None:
    """Insert ``rows`` (all of one task, from :func:`new_rows`) whole or not at all."""
    if not rows:
        return
    using = router.db_for_write(TaskExecution)
    if connections[using].vendor == "postgresql":
        postgres.insert_ready(rows, per_row=_PER_ROW, per_task=_PER_TASK, using=using)
        for row in rows:
            row._state.adding, row._state.db = False, using
    else:
        # As many statements as the database's limit on parameters needs, in one transaction.
        TaskExecution.objects.using(using).bulk_create(rows)


# The rows are made as unpickling makes a model instance, without Model.__init__ (so
# without pre_init and post_init): in a batch, __init__ costs more than all the rest of a row.


@functools.cache
def _static_defaults() -> dict[str, Any]:
    """Each column's default, but those made for each row (see :func:`_made_defaults`)."""
    fields = TaskExecution._meta.concrete_fields
    return {f.attname: f.get_default() for f in fields if not _made_for_each_row(f)}


@functools.cache
def _made_defaults() -> tuple[tuple[str, Callable[[], Any]], ...]:
    """The defaults made afresh for each row (an empty list, say: never shared by two rows),
    but those :func:`new_rows` sets itself."""
    fields = TaskExecution._meta.concrete_fields
    ours = set(_PER_ROW + _PER_TASK)
    return tuple(
        (f.attname, f.default) for f in fields if _made_for_each_row(f) and f.attname not in ours
    )


def _made_for_each_row(field: Any) -> bool:
    return bool(field.has_default() and callable(field.default))
