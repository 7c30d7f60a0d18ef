"""django-ray's own signal, and the receivers that log; logging lives here, not in the worker."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal, receiver
from django.tasks import TaskResultStatus
from django.utils import timezone

logger = logging.getLogger("django_ray.worker")

# Sent by the worker after an outcome is committed: execution (the row, as
# recorded; state READY means a retry is scheduled) and outcome (what came
# back from Ray). worker_id names the worker.
execution_finished = Signal()

# Sent by the worker once claimed rows are committed and submitted to Ray:
# executions (the rows), worker_id.
executions_claimed = Signal()

# Sent when a worker stops tracking attempts without recording an outcome
# (handed back at shutdown, taken over after its lease lapsed, outcome
# discarded because the attempt no longer owned its row): executions, worker_id.
executions_released = Signal()


@receiver(execution_finished)
def log_execution_finished(sender: Any, execution: Any, outcome: Any, **kwargs: Any) -> None:
    ended = execution.finished_at or timezone.now()
    seconds = (ended - execution.last_attempted_at).total_seconds()
    head = f"Task {execution.task_path} [{execution.pk}]"
    if execution.state == TaskResultStatus.SUCCESSFUL:
        logger.info("%s SUCCESSFUL in %.3fs (attempt %d)", head, seconds, execution.attempt)
        return
    error = execution.errors[-1] if execution.errors else {}
    cause = f"{error.get('exception_class_path')}: {error.get('message')}"
    if execution.state == TaskResultStatus.READY:
        logger.warning(
            "%s attempt %d failed in %.3fs: %s; retrying at %s",
            head,
            execution.attempt,
            seconds,
            cause,
            execution.run_after.isoformat(),
        )
    else:
        logger.error("%s FAILED in %.3fs (attempt %d): %s", head, seconds, execution.attempt, cause)
