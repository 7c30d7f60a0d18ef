"""The first state of an execution: READY rows made, checked and signed, then written at once.

Every call of a batch is checked before any row is written, so a batch is written
whole or not at all. On PostgreSQL the rows go in one ``INSERT`` (see
:func:`django_ray.lifecycle.postgres.insert_ready`), and the table's trigger sends
one ``NOTIFY`` for it; elsewhere ``bulk_create()`` writes them inside one transaction.
"""

from __future__ import annotations

import functools
import os
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
_PER_ROW = ("id", "args", "kwargs", "signature")
_PER_TASK = (
    "backend",
    "task_path",
    "queue_name",
    "priority",
    "run_after",
    "takes_context",
    "options",
    "enqueued_at",
)
# A version 4 UUID: random but for the version (4) and the variant (RFC 4122) bits.
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)

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

    The rows of one batch share their ``enqueued_at``, and their random ids ascend in
    the order of the calls: claims order by priority, ``enqueued_at``, then id, so
    the rows are claimed in the order of the calls.
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
        enqueued_at=timezone.now(),
    )
    made = _made_defaults()
    rows = []
    for id_, (args, kwargs) in zip(_ascending_ids(len(calls)), calls, strict=True):
        row = TaskExecution.__new__(TaskExecution)
        row.__dict__.update(values)
        for name, make in made:
            row.__dict__[name] = make()
        row.id, row.args, row.kwargs = id_, args, kwargs
        row._state = ModelState()
        rows.append(row)
    sign_all(rows)
    return rows


def _ascending_ids(count: int) -> list[str]:
    """``count`` random version 4 UUIDs (as ``uuid.uuid4()`` makes them), in ascending order,
    as text: the row's signature, its insert and its result each need the text, and a UUID
    object would make it each time."""
    noise = os.urandom(16 * count)
    chunks = (noise[at : at + 16] for at in range(0, 16 * count, 16))
    numbers = sorted(int.from_bytes(chunk) & _UUID4_CLEAR | _UUID4_SET for chunk in chunks)
    return [
        f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in map("{:032x}".format, numbers)
    ]


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
