"""Cancellation as data: the error recorded on a task that was cancelled."""


class TaskCancelled(Exception):
    """The task was cancelled before it finished; it is never retried."""
