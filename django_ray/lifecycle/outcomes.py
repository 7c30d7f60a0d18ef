"""How an attempt's outcome becomes a state: the retry policy, cancellation and losses.

``apply_outcome`` is the one place an outcome is decided: the worker uses it for
Ray Core results and for losses found by recovery, a Ray Job's entrypoint for its
own result. Each row is its own blast radius: whatever one row holds, recording
it can fail that row (with the cause in its errors) and nothing else. Only an
outage of the database itself goes further, to the worker's backoff.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from django_ray.cancel import TaskCancelled
from django_ray.conf import get_settings
from django_ray.exceptions import OutcomeNotRecordable
from django_ray.lifecycle import announce, attempts
from django_ray.lifecycle.errors import error_data
from django_ray.models import TaskExecution
from django_ray.retry import Retry, RetryPolicy, decide
from django_ray.runtime.job import Outcome
from django_ray.runtime.jobs import RayJobEndedWithoutOutcome

logger = logging.getLogger("django_ray.worker")

# The database itself is unreachable: not a row's doing, so never a row's failure.
DATABASE_ERRORS = (OperationalError, InterfaceError)


def apply_outcome(row: TaskExecution, outcome: Outcome, now: datetime) -> bool:
    """Record one attempt's outcome on its row; a failure goes through the retry policy.

    Returns False, changing nothing, when the attempt no longer owns the row.
    """
    row.ray_node = outcome.node
    if outcome.succeeded:
        return attempts.succeed(row, value=outcome.value, reference=outcome.reference, now=now)
    assert outcome.error is not None
    if row.cancelled_at is not None:
        # However the attempt ended on Ray (killed, stopped), it ended because
        # it was cancelled, and a cancelled task is never retried.
        outcome = dataclasses.replace(outcome, error=cancellation_error(row), lost=False)
    assert outcome.error is not None
    policy = RetryPolicy.for_task(get_settings(), row.options)
    decision = decide(row.attempt, outcome.error, policy, now)
    if isinstance(decision, Retry):
        return attempts.retry(row, error=outcome.error, run_after=decision.at, lost=outcome.lost)
    return attempts.fail(row, error=outcome.error, now=now, lost=outcome.lost)


def record_outcomes(
    running: dict[str, TaskExecution], outcomes: Iterable[Outcome]
) -> list[TaskExecution]:
    """Record each outcome on its row (one transaction), then send the signals.

    Signals go out after the commit and through ``send_robust``: a receiver
    that raises can neither undo nor change a recorded outcome.
    """
    outcomes = list(outcomes)
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
                attempts.note_node(row, outcome.attempt, outcome.node)
                recorded.append((_reload(row), outcome))
            elif outcome.succeeded and row.cancelled_at is None:
                row.ray_node = outcome.node
                successes.append((row, outcome))  # the common case: recorded in one batch
            elif record_safely(row, outcome, now):
                recorded.append((row, outcome))
            else:
                announce.discarded(row)
        owned = attempts.succeed_many(
            [(row, outcome.value, outcome.reference) for row, outcome in successes], now
        )
        for row, outcome in successes:
            if str(row.pk) in owned:
                recorded.append((row, outcome))
            else:
                announce.discarded(row)
    for outcome in outcomes:
        running.pop(outcome.execution_id, None)
    for row, outcome in recorded:
        announce.finished(row, outcome)
    return [row for row, _ in recorded]


def record_loss(row: TaskExecution, error: dict[str, Any], now: datetime) -> bool:
    """Record this attempt as lost to infrastructure (its worker or node died under it)."""
    outcome = Outcome(execution_id=str(row.pk), attempt=row.attempt, error=error, lost=True)
    return _record_and_announce(row, outcome, now)


def fail_unrunnable(row: TaskExecution, cause: BaseException, now: datetime) -> bool:
    """End this attempt FAILED before it ran: the row cannot be run (never retried)."""
    outcome = Outcome(execution_id=str(row.pk), attempt=row.attempt, error=error_data(cause))
    return _record_and_announce(row, outcome, now)


def _record_and_announce(row: TaskExecution, outcome: Outcome, now: datetime) -> bool:
    with transaction.atomic():
        recorded = record_safely(row, outcome, now)
    if recorded:
        announce.finished(row, outcome)
    return recorded


def record_safely(row: TaskExecution, outcome: Outcome, now: datetime) -> bool:
    """``apply_outcome`` in a savepoint; if recording raises, the row is FAILED instead.

    The row's error is then an :class:`OutcomeNotRecordable` naming the cause.
    True when the row changed. A database outage is not the row's doing: it is
    raised, for the worker to back off and try again.
    """
    try:
        with transaction.atomic():
            return apply_outcome(row, outcome, now)
    except DATABASE_ERRORS:
        raise
    except Exception as exc:
        logger.exception("%s [%s]: recording the outcome failed", row.task_path, row.pk)
        return fail_broken(row, f"Recording the outcome of attempt {row.attempt} failed", exc)


def fail_broken(row: TaskExecution, what: str, exc: Exception) -> bool:
    """FAIL a row that broke something done with it, naming ``exc``; True if recorded."""
    cause = OutcomeNotRecordable(f"{what}: {type(exc).__name__}: {exc}")
    cause.__cause__ = exc
    try:
        with transaction.atomic():
            return attempts.fail(row, error=error_data(cause), now=timezone.now())
    except DATABASE_ERRORS:
        raise
    except Exception:
        logger.exception("%s [%s]: could not fail the row either", row.task_path, row.pk)
        return False


def cancellation_error(row: TaskExecution) -> dict[str, Any]:
    return error_data(TaskCancelled(f"Cancelled at {row.cancelled_at:%Y-%m-%d %H:%M:%S%z}"))


def _unless_recorded(row: TaskExecution, outcome: Outcome) -> Outcome:
    """A job said it ended: if its attempt still owns the row, nothing was recorded,
    so its end becomes the outcome (the job's error, or a job that succeeded silently)."""
    if not TaskExecution.objects.owned_by(row.pk, row.attempt, row.claim_token).exists():
        return outcome
    error = outcome.error or error_data(
        RayJobEndedWithoutOutcome,
        f"Ray job {row.ray_handle} ended without an outcome",
        traceback="Tail of the job's logs:\n",
    )
    # A job that ended without a word was lost; one stopped at its time limit was not.
    lost = outcome.lost or outcome.error is None
    return dataclasses.replace(outcome, error=error, recorded=False, lost=lost)


def _reload(row: TaskExecution) -> TaskExecution:
    attempt = row.attempt
    row.refresh_from_db()
    row.attempt = attempt  # the attempt that ended, even if a retry was claimed since
    return row
