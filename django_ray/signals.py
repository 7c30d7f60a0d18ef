"""django-ray's own signal, and the receivers that log; logging lives here, not in the worker."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal, receiver

logger = logging.getLogger("django_ray.worker")

# Sent by the worker after an outcome is committed: execution (the row, as
# recorded) and outcome (what came back from Ray).
execution_finished = Signal()


@receiver(execution_finished)
def log_execution_finished(sender: Any, execution: Any, outcome: Any, **kwargs: Any) -> None:
    seconds = (execution.finished_at - execution.last_attempted_at).total_seconds()
    if outcome.succeeded:
        logger.info(
            "Task %s [%s] SUCCESSFUL in %.3fs (attempt %d)",
            execution.task_path,
            execution.pk,
            seconds,
            execution.attempt,
        )
    else:
        logger.error(
            "Task %s [%s] FAILED in %.3fs (attempt %d): %s: %s",
            execution.task_path,
            execution.pk,
            seconds,
            execution.attempt,
            outcome.error["exception_class_path"],
            outcome.error["message"],
        )
