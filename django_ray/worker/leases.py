"""The worker's lease row: proof of life that other workers can read."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from django_ray.models import WorkerLease

if TYPE_CHECKING:
    from django_ray.worker.loop import WorkerOptions


class Lease:
    """Holds ``WorkerLease`` for one worker: acquire, heartbeat every N seconds, release."""

    def __init__(self, worker_id: str, options: WorkerOptions, *, runner: str) -> None:
        self.worker_id = worker_id
        self.options = options
        self.runner = runner
        self._next_heartbeat = 0.0

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
        self._next_heartbeat = time.monotonic() + self.options.heartbeat_seconds

    def heartbeat_if_due(self) -> bool:
        """Extend the lease if a heartbeat is due; True if it was."""
        if time.monotonic() < self._next_heartbeat:
            return False
        now = timezone.now()
        WorkerLease.objects.filter(pk=self.worker_id).update(
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=self.options.lease_seconds),
        )
        self._next_heartbeat = time.monotonic() + self.options.heartbeat_seconds
        return True

    def release(self) -> None:
        """Mark the lease stopped and expired, so nobody waits for it to time out."""
        now = timezone.now()
        WorkerLease.objects.filter(pk=self.worker_id).update(
            stopping=True, heartbeat_at=now, lease_expires_at=now
        )
