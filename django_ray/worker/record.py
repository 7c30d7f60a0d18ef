"""Applying outcomes to rows: fenced by attempt and claim token, committed before anyone is told.

``apply_outcome`` is the one place an outcome becomes a state: the worker uses
it for Ray Core results, a Ray Job's entrypoint for its own result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from django_ray.backends import RayTaskBackend, to_task_result
from django_ray.conf import get_settings
from django_ray.models import State, TaskExecution
from django_ray.registry import resolve_task
from django_ray.retry import Retry, RetryPolicy, decide
from django_ray.runtime.job import Outcome, describe_error
from django_ray.runtime.jobs import RayJobEndedWithoutOutcome, job_error
from django_ray.signals import execution_finished, executions_claimed, executions_released

logger = logging.getLogger("django_ray.worker")


def apply_outcome(row: TaskExecution, outcome: Outcome, now: datetime) -> bool:
    """Record one attempt's outcome on its row; a failure goes through the retry policy.

    Returns False, changing nothing, when the attempt no longer owns the row.
    The in-memory row is updated to what was written.
    """
    if outcome.succeeded:
        owned = row.record_success(
            value=outcome.value, reference=outcome.reference, finished_at=now
        )
        row.state, row.finished_at = State.SUCCESSFUL, now
        row.result_data, row.result_reference = outcome.value, outcome.reference
        return owned
    assert outcome.error is not None
    if row.cancelled_at is not None:
        # However the attempt ended on Ray (killed, stopped), it ended because
        # it was cancelled, and a cancelled task is never retried.
        outcome = dataclasses.replace(outcome, error=cancellation_error(row), lost=False)
    assert outcome.error is not None
    policy = RetryPolicy.for_task(get_settings(), row.options)
    decision = decide(row.attempt, outcome.error, policy, now)
    if isinstance(decision, Retry):
        owned = row.record_retry(error=outcome.error, run_after=decision.at, lost=outcome.lost)
        row.state, row.run_after = State.READY, decision.at
    else:
        owned = row.record_failure(error=outcome.error, finished_at=now, lost=outcome.lost)
        row.state, row.finished_at = State.FAILED, now
    row.errors = [*row.errors, {**outcome.error, "attempt": row.attempt}]
    return owned


def record_outcomes(
    running: dict[str, TaskExecution], outcomes: Iterable[Outcome]
) -> list[TaskExecution]:
    """Record each outcome on its row (one transaction), then send the signals.

    Signals go out after the commit and through ``send_robust``: a receiver
    that raises can neither undo nor change a recorded outcome.
    """
    recorded: list[tuple[TaskExecution, Outcome]] = []
    now = timezone.now()
    with transaction.atomic():
        successes = []
        for outcome in outcomes:
            row = running.get(outcome.execution_id)
            if row is None or row.attempt != outcome.attempt:
                continue  # no longer tracked here (taken over after a lapsed lease)
            if outcome.recorded:
                outcome = _unless_recorded(row, outcome)
            if outcome.recorded:
                recorded.append((_reload(row), outcome))
            elif outcome.succeeded and row.cancelled_at is None:
                successes.append((row, outcome))  # the common case: recorded in one batch
            elif apply_outcome(row, outcome, now):
                recorded.append((row, outcome))
            else:
                _discarded(row)
        owned = TaskExecution.objects.record_successes(
            [(row, outcome.value, outcome.reference) for row, outcome in successes], now
        )
        for row, outcome in successes:
            if str(row.pk) not in owned:
                _discarded(row)
                continue
            row.state, row.finished_at = State.SUCCESSFUL, now
            row.result_data, row.result_reference = outcome.value, outcome.reference
            recorded.append((row, outcome))
    for outcome in outcomes:
        running.pop(outcome.execution_id, None)
    for row, outcome in recorded:
        announce(row, outcome)
    return [row for row, _ in recorded]


def _discarded(row: TaskExecution) -> None:
    _send_robust(executions_released, executions=[row], worker_id=row.worker)
    logger.warning(
        "Outcome of %s [%s] attempt %d discarded: the attempt no longer owns the row",
        row.task_path,
        row.pk,
        row.attempt,
    )


def cancellation_error(row: TaskExecution) -> dict[str, Any]:
    from django_ray.cancel import TaskCancelled

    return describe_error(TaskCancelled(f"Cancelled at {row.cancelled_at:%Y-%m-%d %H:%M:%S%z}"))


def _unless_recorded(row: TaskExecution, outcome: Outcome) -> Outcome:
    """A job said it ended: if its attempt still owns the row, nothing was recorded,
    so its end becomes the outcome (the job's error, or a job that succeeded silently)."""
    if not TaskExecution.objects.owned_by(row.pk, row.attempt, row.claim_token).exists():
        return outcome
    error = outcome.error or job_error(
        RayJobEndedWithoutOutcome, f"Ray job {row.ray_handle} ended without an outcome", ""
    )
    return dataclasses.replace(outcome, error=error, recorded=False, lost=True)


def _reload(row: TaskExecution) -> TaskExecution:
    attempt = row.attempt
    row.refresh_from_db()
    row.attempt = attempt  # the attempt that ended, even if a retry was claimed since
    return row


def announce_started(rows: list[TaskExecution], worker_id: str) -> None:
    """Django's ``task_started``, once the claim is committed and the attempts submitted."""
    _send_robust(executions_claimed, executions=rows, worker_id=worker_id)
    for row in rows:
        try:
            task = resolve_task(row.task_path)
        except InvalidTask:
            continue  # it will fail on Ray with the reason; no Task to describe here
        task_started.send_robust(RayTaskBackend, task_result=to_task_result(row, task))


def announce(row: TaskExecution, outcome: Outcome) -> None:
    """Tell receivers about a committed outcome; their errors are logged, never raised."""
    _send_robust(execution_finished, execution=row, outcome=outcome, worker_id=row.worker)
    if row.state == State.READY:
        return  # a retry is coming: Django's task_finished is for the end
    try:
        task = resolve_task(row.task_path)
    except InvalidTask:
        return  # no Task to describe: Django's receivers need one
    task_finished.send_robust(RayTaskBackend, task_result=to_task_result(row, task))


def release(rows: list[TaskExecution], worker_id: str) -> None:
    """Tell receivers this worker no longer tracks these attempts (no outcome recorded)."""
    if rows:
        _send_robust(executions_released, executions=rows, worker_id=worker_id)


def _send_robust(signal: Signal, **kwargs: Any) -> None:
    for receiver, error in signal.send_robust(TaskExecution, **kwargs):
        if isinstance(error, Exception):
            logger.error("Receiver %r of a django-ray signal failed: %r", receiver, error)
