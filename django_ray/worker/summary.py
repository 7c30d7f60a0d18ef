"""The worker's one-line summary of what it has done, logged at INFO."""

from __future__ import annotations

import logging
import time

from django_ray.models import TaskExecution

logger = logging.getLogger("django_ray.worker")


class Summary:
    """What the worker did since it started, logged as one line every ``every`` seconds."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.claimed = self.succeeded = self.failed = self.retried = 0
        self._started = self._last = time.monotonic()
        self._done_at_last = 0

    def finished(self, rows: list[TaskExecution]) -> None:
        for row in rows:
            if row.state == "SUCCESSFUL":
                self.succeeded += 1
            elif row.state == "FAILED":
                self.failed += 1
            else:
                self.retried += 1

    def log_if_due(self, running: int) -> None:
        now = time.monotonic()
        if not self.every or now - self._last < self.every:
            return
        done = self.succeeded + self.failed
        rate = (done - self._done_at_last) / (now - self._last)
        self._last, self._done_at_last = now, done
        logger.info(
            "Summary: claimed=%d running=%d succeeded=%d failed=%d retried=%d rate=%.1f/s",
            self.claimed,
            running,
            self.succeeded,
            self.failed,
            self.retried,
            rate,
        )
