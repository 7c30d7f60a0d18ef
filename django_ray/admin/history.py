"""An execution's attempts, one by one: who ran each, where on Ray, and how it ended.

Everything comes from the row: ``worker_ids`` holds the worker of each claim,
``errors`` the error of each failed attempt (with its Ray handle since the
handle is recorded there), and the last attempt's handle is ``ray_handle``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django_ray.admin.dashboard import ray_dashboard_url
from django_ray.models import State, TaskExecution


@dataclass(frozen=True, slots=True)
class AttemptError:
    exception_class_path: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt as the history table shows it; ``number`` 0 holds what happened before
    the first one (a task cancelled while it waited)."""

    number: int
    worker: str
    node: str
    """The Ray node it ran on (hex id; "" when unknown, as for an attempt lost with it)."""
    ray_handle: str
    dashboard_url: str | None
    errors: tuple[AttemptError, ...]
    outcome: str
    """With no error: the row's state for the last attempt, else how the attempt ended."""


def attempt_history(row: TaskExecution) -> list[Attempt]:
    """The row's attempts in order, 1 to ``row.attempt`` (and 0 where an error names it)."""
    errors: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for position, error in enumerate(row.errors, start=1):
        # Entries written by hand or long ago may lack the attempt: their place says it.
        errors[_attempt_number(error, position)].append(error)
    numbers = sorted(set(range(1, row.attempt + 1)) | set(errors))
    return [_attempt(row, number, errors.get(number, [])) for number in numbers]


def _attempt(row: TaskExecution, number: int, errors: list[dict[str, Any]]) -> Attempt:
    last = number == row.attempt
    handle = (row.ray_handle if last else "") or _first(errors, "ray_handle")
    worker_ids = row.worker_ids or []
    worker = worker_ids[number - 1] if 0 < number <= len(worker_ids) else ""
    if last and not errors:
        outcome = str(row.state)
    elif last and row.state == State.READY:
        outcome = "waiting for its retry"
    elif errors and last:
        outcome = str(State.FAILED)
    elif errors:
        outcome = "failed, then retried"
    else:
        outcome = "handed back to the queue"
    return Attempt(
        number=number,
        worker=worker or _first(errors, "worker"),
        node=_first(errors, "node") or (row.ray_node if last else ""),
        ray_handle=handle,
        dashboard_url=ray_dashboard_url(handle, row.runner),
        errors=tuple(
            AttemptError(
                exception_class_path=str(error.get("exception_class_path", "")),
                message=str(error.get("message", "")),
                traceback=str(error.get("traceback") or ""),
            )
            for error in errors
        ),
        outcome=outcome,
    )


def _attempt_number(error: dict[str, Any], position: int) -> int:
    number = error.get("attempt")
    return number if isinstance(number, int) else position


def _first(errors: list[dict[str, Any]], key: str) -> str:
    return next((str(error[key]) for error in errors if error.get(key)), "")
