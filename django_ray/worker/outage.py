"""Carrying on through a database outage: back off, reconnect, keep what is in flight."""

from __future__ import annotations

import logging

from django.db import close_old_connections

logger = logging.getLogger("django_ray.worker")


class Outage:
    """Backoff while the database or Ray is unreachable: 0.5 s, doubling, at most 30 s."""

    def __init__(self) -> None:
        self.delay = 0.0

    def wait_after(self, exc: Exception, what: str) -> float:
        self.delay = min(max(self.delay * 2, 0.5), 30.0)
        logger.error("%s unavailable (%s); retrying in %.1fs", what, exc, self.delay)
        close_old_connections()
        return self.delay

    def over(self) -> None:
        if self.delay:
            logger.warning("Reachable again; carrying on")
        self.delay = 0.0
