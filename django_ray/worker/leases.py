"""The worker's lease row: proof of life that other workers can read."""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from django_ray.models import WorkerLease

logger = logging.getLogger("django_ray.worker")

if TYPE_CHECKING:
    from django_ray.worker.loop import WorkerOptions


class Lease:
    """Holds ``WorkerLease`` for one worker: acquire, heartbeat every N seconds, release."""

    def __init__(self, worker_id: str, options: WorkerOptions, *, runner: str) -> None:
        self.worker_id = worker_id
        self.options = options
        self.runner = runner
        self._next_heartbeat = 0.0
        self._expires = float("inf")

    def acquire(self) -> None:
        now = timezone.now()
        WorkerLease.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "queues": list(self.options.queues),
                "runner": self.runner,
                "concurrency": self.options.concurrency,
                "ray_address": self.options.ray_address or "",
                "started_at": now,
                "heartbeat_at": now,
                "lease_expires_at": now + timedelta(seconds=self.options.lease_seconds),
                "stopping": False,
            },
        )
        self._schedule()

    @property
    def lapsed(self) -> bool:
        """True while the lease may have expired (a heartbeat is overdue past the lease)."""
        return time.monotonic() > self._expires

    def heartbeat_if_due(self) -> bool | None:
        """Extend the lease if a heartbeat is due.

        None: not due. True: extended. False: the lease had expired (this
        process was paused or cut off past it); others may have recovered its
        work, so it is acquired anew and the caller must re-check what it holds.
        """
        if time.monotonic() < self._next_heartbeat:
            return None
        now = timezone.now()
        extended = WorkerLease.objects.filter(pk=self.worker_id, lease_expires_at__gt=now).update(
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=self.options.lease_seconds),
        )
        if not extended:
            logger.error(
                "Worker %s lost its lease (expired before this heartbeat); acquiring a new one",
                self.worker_id,
            )
            self.acquire()
            return False
        self._schedule()
        return True

    def _schedule(self) -> None:
        now = time.monotonic()
        self._next_heartbeat = now + self.options.heartbeat_seconds
        self._expires = now + self.options.lease_seconds

    def release(self) -> None:
        """Mark the lease stopped and expired, so nobody waits for it to time out."""
        now = timezone.now()
        WorkerLease.objects.filter(pk=self.worker_id).update(
            stopping=True, heartbeat_at=now, lease_expires_at=now
        )
