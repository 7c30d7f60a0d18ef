"""A worker's lease row: proof of life that other workers, status and doctor can read.

Django workers hold one; so does each Celery worker running the ``django_ray``
pool (origin ``celery``), so the Celery tasks it runs show as in flight, not stuck.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from datetime import timedelta

from django.utils import timezone

from django_ray.models import WorkerLease
from django_ray.states import Origin

logger = logging.getLogger("django_ray.worker")


class Lease:
    """Holds ``WorkerLease`` for one worker: acquire, heartbeat every N seconds, release."""

    def __init__(
        self,
        worker_id: str,
        *,
        queues: Iterable[str],
        concurrency: int,
        runner: str,
        heartbeat_seconds: float,
        lease_seconds: float,
        ray_address: str | None = None,
        origin: str = Origin.TASKS,
    ) -> None:
        self.worker_id = worker_id
        self.queues = list(queues)
        self.concurrency = concurrency
        self.runner = runner
        self.heartbeat_seconds = heartbeat_seconds
        self.lease_seconds = lease_seconds
        self.ray_address = ray_address or ""
        self.origin = origin
        self._next_heartbeat = 0.0
        self._expires = float("inf")

    def acquire(self) -> None:
        now = timezone.now()
        WorkerLease.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={
                "origin": self.origin,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "queues": self.queues,
                "runner": self.runner,
                "concurrency": self.concurrency,
                "ray_address": self.ray_address,
                "started_at": now,
                "heartbeat_at": now,
                "lease_expires_at": now + timedelta(seconds=self.lease_seconds),
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
            lease_expires_at=now + timedelta(seconds=self.lease_seconds),
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

    def resize(self, concurrency: int) -> None:
        """The worker now runs this many at once (a Celery pool grew or shrank)."""
        self.concurrency = concurrency
        WorkerLease.objects.filter(pk=self.worker_id).update(concurrency=concurrency)

    def _schedule(self) -> None:
        now = time.monotonic()
        self._next_heartbeat = now + self.heartbeat_seconds
        self._expires = now + self.lease_seconds

    def release(self) -> None:
        """Mark the lease stopped and expired, so nobody waits for it to time out."""
        now = timezone.now()
        WorkerLease.objects.filter(pk=self.worker_id).update(
            stopping=True, heartbeat_at=now, lease_expires_at=now
        )
