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
# Never retried, whatever the policy: the user asked to stop, the row names no
# task, or the task returned what can never be stored.
NEVER_RETRIED = frozenset(
    {CANCELLED, "django_ray.registry.UnregisteredTask", "django_ray.payloads.PayloadError"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``max_attempts`` in all; before attempt n+1, wait ``backoff_seconds * 2**(n-1)``."""

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
        """How long to wait after attempt ``attempt`` (1-based) failed."""
        return timedelta(seconds=self.backoff_seconds * 2 ** (attempt - 1))


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
