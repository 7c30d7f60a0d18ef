"""The signals sent once a state change is committed; each row announced on its own.

Django's ``task_started`` and ``task_finished`` need the row's ``Task``, which
means importing the module the row names: only a row ``enqueue()`` signed is
imported, and one whose module no longer imports (or raises while it does) is
announced through django-ray's own signals only.
A receiver that raises, or a row that cannot be described, is logged and skipped:
announcing never changes what was recorded, nor stops the worker. When Django's own
logging receivers are the only ones and their logger would not log, no
``TaskResult`` is built at all.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.dispatch import Signal
from django.tasks import signals as django_signals
from django.tasks.signals import task_finished, task_started

from django_ray.registry import resolve_task
from django_ray.signals import execution_finished, executions_claimed, executions_released
from django_ray.signing import verify
from django_ray.states import State

if TYPE_CHECKING:
    from django_ray.models import TaskExecution
    from django_ray.runtime.job import Outcome

logger = logging.getLogger("django_ray.worker")


def started(rows: list[TaskExecution], worker_id: str) -> None:
    """Once the claim is committed and the attempts submitted."""
    _send_robust(executions_claimed, executions=rows, worker_id=worker_id)
    for row in rows:
        _send_django(task_started, row)


def finished(row: TaskExecution, outcome: Outcome) -> None:
    """Once an outcome is committed (state READY: a retry is coming; Django hears of the end)."""
    _send_robust(execution_finished, execution=row, outcome=outcome, worker_id=row.worker)
    if row.state != State.READY:
        _send_django(task_finished, row)


def released(rows: list[TaskExecution], worker_id: str) -> None:
    """This worker no longer tracks these attempts, and recorded no outcome for them."""
    if rows:
        _send_robust(executions_released, executions=rows, worker_id=worker_id)


def discarded(row: TaskExecution) -> None:
    """An outcome came back for an attempt that no longer owns its row."""
    released([row], row.worker)
    logger.warning(
        "Outcome of %s [%s] attempt %d discarded: the attempt no longer owns the row",
        row.task_path,
        row.pk,
        row.attempt,
    )


# Django's receivers that only log (at INFO, or ERROR for a failed task).
_DJANGO_LOGGERS = {django_signals.log_task_started, django_signals.log_task_finished}
_django_log = logging.getLogger("django.tasks")


def _anyone_listens(signal: Signal, sender: type, row: TaskExecution) -> bool:
    """Whether a receiver would do anything with this row's ``TaskResult``."""
    try:
        # Django's own, not a public API: on any surprise, assume someone listens.
        receivers = [r for group in signal._live_receivers(sender) for r in group]
    except Exception:
        return True
    if any(receiver not in _DJANGO_LOGGERS for receiver in receivers):
        return True
    level = logging.ERROR if row.state == State.FAILED else logging.INFO
    return bool(receivers) and _django_log.isEnabledFor(level)


def _send_django(signal: Signal, row: TaskExecution) -> None:
    try:
        verify(row)  # never import what a row names unless enqueue() wrote it
        task = resolve_task(row.task_path)
        sender = type(task.get_backend())
        if not _anyone_listens(signal, sender, row):
            return
        result = row.to_task_result(task)
    except Exception:  # the row cannot be described (it fails on Ray, with the reason)
        return
    for receiver, error in signal.send_robust(sender, task_result=result):
        if isinstance(error, Exception):
            logger.error("Receiver %r of Django's %s failed: %r", receiver, signal, error)


def _send_robust(signal: Signal, **kwargs: Any) -> None:
    from django_ray.models import TaskExecution

    for receiver, error in signal.send_robust(TaskExecution, **kwargs):
        if isinstance(error, Exception):
            logger.error("Receiver %r of a django-ray signal failed: %r", receiver, error)
