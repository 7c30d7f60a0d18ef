"""Applying outcomes to rows: fenced by attempt and claim token, committed before anyone is told."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_finished
from django.utils import timezone

from django_ray.backends import RayTaskBackend, to_task_result
from django_ray.models import State, TaskExecution
from django_ray.registry import resolve_task
from django_ray.runtime.job import Outcome
from django_ray.signals import execution_finished

logger = logging.getLogger("django_ray.worker")


def record_outcomes(running: dict[str, TaskExecution], outcomes: Iterable[Outcome]) -> None:
    """Record each outcome on its row (one transaction), then send the signals.

    Signals go out after the commit and through ``send_robust``: a receiver
    that raises can neither undo nor change a recorded outcome.
    """
    recorded: list[tuple[TaskExecution, Outcome]] = []
    finished_at = timezone.now()
    with transaction.atomic():
        for outcome in outcomes:
            row = running.pop(outcome.execution_id)
            if _apply(row, outcome, finished_at):
                recorded.append((row, outcome))
            else:
                logger.warning(
                    "Outcome of %s [%s] attempt %d discarded: the attempt no longer owns the row",
                    row.task_path,
                    row.pk,
                    row.attempt,
                )
    for row, outcome in recorded:
        _announce(row, outcome)


def _apply(row: TaskExecution, outcome: Outcome, finished_at: datetime) -> bool:
    if outcome.succeeded:
        owned = row.record_success(value=outcome.value, finished_at=finished_at)
        row.state, row.result_data = State.SUCCESSFUL, outcome.value
    else:
        assert outcome.error is not None
        owned = row.record_failure(error=outcome.error, finished_at=finished_at)
        row.state = State.FAILED
        row.errors = [*row.errors, {**outcome.error, "attempt": row.attempt}]
    row.finished_at = finished_at
    return owned


def _announce(row: TaskExecution, outcome: Outcome) -> None:
    execution_finished.send_robust(TaskExecution, execution=row, outcome=outcome)
    try:
        task = resolve_task(row.task_path)
    except InvalidTask:
        return  # no Task to describe: Django's receivers need one
    task_finished.send_robust(RayTaskBackend, task_result=to_task_result(row, task))
