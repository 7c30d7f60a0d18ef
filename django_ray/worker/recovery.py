"""Recovering what other workers left: RUNNING rows whose worker holds no live lease.

- ``ray_job`` rows are reconciled against Ray first: a job Ray still knows is
  adopted (this worker monitors it from now on, and records its end if the job
  could not); a job Ray does not know falls to the stuck rule.
- ``ray_core`` rows are lost attempts: their Ray task died with its owner, so
  they go to the retry policy at once.
- The stuck rule: a RUNNING row with neither a live worker lease nor a monitor
  heartbeat for ``STUCK_TASK_TIMEOUT_SECONDS`` is a lost attempt.
- A RUNNING row that names this worker but that it does not track is a claim
  whose reply was lost (the connection dropped after the COMMIT, before the
  claimed rows were read): nothing was submitted, so it goes back to the queue.
  The worker's live lease would otherwise keep it RUNNING for ever.

Each pass handles a bounded batch, through the index on RUNNING rows. Each row
is handled on its own: one that raises is failed with the cause, and the pass
goes on. Rows that came from Celery are never touched (see ``orphaned``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from django_ray.conf import get_settings
from django_ray.lifecycle import attempts
from django_ray.lifecycle.errors import error_data
from django_ray.lifecycle.outcomes import DATABASE_ERRORS, fail_broken, record_loss
from django_ray.models import TaskExecution

if TYPE_CHECKING:
    from django_ray.worker.loop import Worker

logger = logging.getLogger("django_ray.worker")

BATCH = 100


class WorkerLost(Exception):
    """The worker running this attempt stopped heartbeating; the attempt is lost."""


def recover(worker: Worker, now: datetime | None = None) -> int:
    """One recovery pass over orphaned rows of the worker's queues; returns rows handled."""
    now = now or timezone.now()
    handled = _hand_back_untracked(worker)
    stuck_before = now - timedelta(seconds=get_settings().stuck_task_timeout_seconds)
    orphans = list(
        TaskExecution.objects.orphaned(worker.options.queues, worker.options.backend)[:BATCH]
    )
    for row in orphans:
        try:
            handled += _recover_one(worker, row, now, stuck_before)
        except DATABASE_ERRORS:
            raise
        except Exception as exc:  # this row, and only this row, cannot be recovered
            logger.exception("Recovering %s [%s] failed; failing the row", row.task_path, row.pk)
            handled += fail_broken(row, "Recovering the attempt failed", exc)
    return handled


def _recover_one(worker: Worker, row: TaskExecution, now: datetime, stuck_before: datetime) -> int:
    if row.outlives_its_worker:
        if _adopt_job(worker, row, now):
            return 1
    else:
        return _lose(row, now, f"worker {row.worker} stopped heartbeating")
    heartbeat = row.monitor_heartbeat_at or row.last_attempted_at
    if heartbeat is None or heartbeat < stuck_before:
        return _lose(row, now, f"no worker lease or monitor heartbeat since {heartbeat}")
    return 0


def _hand_back_untracked(worker: Worker) -> int:
    """Put back in the queue the rows this worker claimed but never saw.

    Recovery runs in the loop's thread between claims, and a claimed row is
    tracked before it is submitted, so an untracked row of this worker was
    never submitted.
    """
    untracked = list(
        TaskExecution.objects.running()
        .filter(worker=worker.worker_id)
        .exclude(pk__in=list(worker._running))[:BATCH]
    )
    handed = 0
    for row in untracked:
        if attempts.hand_back(row):
            handed += 1
            logger.warning(
                "Handed %s [%s] attempt %d back to the queue: claimed by this worker, "
                "but the claim's reply was lost",
                row.task_path,
                row.pk,
                row.attempt,
            )
    return handed


def _adopt_job(worker: Worker, row: TaskExecution, now: datetime) -> bool:
    """Monitor the orphan's job from now on, if Ray still knows it (and this worker can)."""
    status = worker.dispatcher.job_status(str(row.pk), row.attempt)
    if status is None:
        return False
    previous = row.worker
    if not attempts.adopt(row, worker.worker_id, now) or not worker.track(row):
        return False
    logger.warning(
        "Adopted %s [%s] attempt %d from worker %s (its Ray job is %s)",
        row.task_path,
        row.pk,
        row.attempt,
        previous,
        status,
    )
    return True


def _lose(row: TaskExecution, now: datetime, why: str) -> int:
    error = error_data(WorkerLost(f"Attempt {row.attempt} of {row.pk} was lost: {why}."))
    return int(record_loss(row, error, now))
