"""Cancelling tasks: a READY task ends at once; a RUNNING one is stopped on Ray by its worker.

A cancelled task ends FAILED with a ``TaskCancelled`` error (Django's Tasks API has
no cancelled status) and is never retried.
"""

from __future__ import annotations


class TaskCancelled(Exception):
    """The task was cancelled before it finished; it is never retried."""


def cancel(result_id: str, *, reason: str = "Cancelled by request") -> str:
    """Cancel one task by its result id; returns what happened, in words.

    READY: FAILED now, with ``reason`` as the error's message. RUNNING: marked;
    the worker running it stops it on Ray (Ray Core: cancel; Ray Jobs: stop)
    within about a second and records the cancellation. Finished: unchanged.
    """
    from django_ray.lifecycle.operator import cancel as cancel_rows
    from django_ray.models import TaskExecution

    return str(cancel_rows(TaskExecution.objects.filter(pk=result_id), message=reason))
