"""The retry policy: a pure decision from (attempt, error, policy) to Retry or GiveUp.

No ORM, no Ray, no imports of exception classes: errors are data, matched by
their class path and the paths of their bases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

CANCELLED = "django_ray.cancel.TaskCancelled"
MAX_ATTEMPTS = 100
"""The most attempts a task may have (``MAX_TASK_ATTEMPTS``, a task's ``max_attempts``)."""
MAX_RETRY_DELAY_SECONDS = 6 * 3600
"""No retry waits longer than this (six hours), or ``RETRY_BACKOFF_SECONDS`` if that is longer."""
# Never retried, whatever the policy: the user asked to stop, the row names no
# task or was not written by enqueue(), or the task returned what can never be stored.
NEVER_RETRIED = frozenset(
    {
        CANCELLED,
        "django_ray.registry.UnregisteredTask",
        "django_ray.payloads.PayloadError",
        "django_ray.exceptions.InvalidSignature",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``max_attempts`` in all; before attempt n+1, wait ``backoff_seconds * 2**(n-1)``,
    capped at :data:`MAX_RETRY_DELAY_SECONDS` (or ``backoff_seconds``, if longer)."""

    max_attempts: int
    backoff_seconds: float
    denylist: frozenset[str] = frozenset()

    @classmethod
    def for_task(cls, settings: Any, options: Mapping[str, Any]) -> RetryPolicy:
        """The global policy from ``DJANGO_RAY``, with the task's own overrides on top."""
        return cls(
            max_attempts=options.get("max_attempts") or settings.max_task_attempts,
            backoff_seconds=_first_set(
                options.get("retry_backoff_seconds"), settings.retry_backoff_seconds
            ),
            denylist=frozenset(settings.retry_exception_denylist),
        )

    def delay_after(self, attempt: int) -> timedelta:
        """How long to wait after attempt ``attempt`` (1-based) failed.

        Computed with integers and capped before it becomes a ``timedelta``, so no
        attempt count (a row's is data) can overflow it.
        """
        cap = max(MAX_RETRY_DELAY_SECONDS, self.backoff_seconds)
        exponent = max(attempt - 1, 0)
        if self.backoff_seconds <= 0:
            return timedelta(0)
        if exponent > 64:  # far past any cap, and past what a float can hold
            return timedelta(seconds=cap)
        return timedelta(seconds=min(self.backoff_seconds * 2**exponent, cap))


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def decide(
    attempt: int, error: Mapping[str, Any], policy: RetryPolicy, now: datetime
) -> Retry | GiveUp:
    """Whether a failed attempt is followed by another, and when."""
    kinds = {error.get("exception_class_path", ""), *error.get("exception_bases", ())}
    final = sorted(kinds & NEVER_RETRIED)
    if final:
        return GiveUp(f"{final[0]} is never retried")
    denied = sorted(kinds & policy.denylist)
    if denied:
        return GiveUp(f"{denied[0]} is in RETRY_EXCEPTION_DENYLIST")
    if attempt >= policy.max_attempts:
        return GiveUp(f"attempt {attempt} of {policy.max_attempts}")
    return Retry(at=now + policy.delay_after(attempt))


def _first_set(*values: Any) -> Any:
    return next(value for value in values if value is not None)
