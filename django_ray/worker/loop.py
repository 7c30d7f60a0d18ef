"""The worker: one loop that claims rows, hands them to a dispatcher and records outcomes."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Protocol

from django.utils import timezone

from django_ray.models import TaskExecution
from django_ray.runtime.job import Job, Outcome
from django_ray.worker.leases import Lease
from django_ray.worker.record import announce_started, record_outcomes

logger = logging.getLogger("django_ray.worker")


class Dispatcher(Protocol):
    """Where claimed attempts run: Ray Core, Ray Jobs, or in-process for unit tests."""

    runner: str

    @property
    def in_flight(self) -> int: ...

    def submit(self, job: Job) -> str: ...

    def wait(self, timeout: float) -> list[Outcome]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    queues: tuple[str, ...]
    concurrency: int
    heartbeat_seconds: float
    lease_seconds: float
    backend: str = "default"
    ray_address: str | None = None
    burst: bool = False
    # How long an idle worker sleeps between claim attempts, and how long a
    # busy one waits on Ray for the next completion before claiming again.
    idle_wait_seconds: float = 1.0
    busy_wait_seconds: float = 0.1


@dataclass(frozen=True, slots=True)
class Tick:
    recorded: int
    claimed: int


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Worker:
    """Drives rows from READY to an end. ``tick()`` is one pass; ``run()`` repeats it."""

    def __init__(
        self, options: WorkerOptions, dispatcher: Dispatcher, *, worker_id: str | None = None
    ) -> None:
        self.options = options
        self.dispatcher = dispatcher
        self.worker_id = worker_id or new_worker_id()
        self.lease = Lease(self.worker_id, options, runner=dispatcher.runner)
        self._running: dict[str, TaskExecution] = {}

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def tick(self) -> Tick:
        """Heartbeat when due, record what finished, claim up to the free slots and submit."""
        self.heartbeat_if_due()
        recorded = self.collect(timeout=0)
        claimed = self.claim_and_submit()
        return Tick(recorded=recorded, claimed=claimed)

    def heartbeat_if_due(self) -> None:
        """Extend the lease, and mark the rows in flight as monitored by this worker."""
        if not self.lease.heartbeat_if_due():
            return
        if self._running:
            TaskExecution.objects.running().filter(
                pk__in=list(self._running), worker=self.worker_id
            ).update(monitor_heartbeat_at=timezone.now())

    def collect(self, timeout: float) -> int:
        outcomes = self.dispatcher.wait(timeout)
        if outcomes:
            record_outcomes(self._running, outcomes)
        self.report_ray_status()
        return len(outcomes)

    def report_ray_status(self) -> None:
        """Copy what Ray says of attempts in flight (e.g. PENDING on resources) to their rows."""
        statuses: dict[str, str] = getattr(self.dispatcher, "statuses", {})
        changed: dict[str, list[str]] = {}
        for execution_id, status in statuses.items():
            row = self._running.get(execution_id)
            if row is not None and row.ray_status != status:
                row.ray_status = status
                changed.setdefault(status, []).append(execution_id)
        for status, ids in changed.items():
            TaskExecution.objects.running().filter(pk__in=ids, worker=self.worker_id).update(
                ray_status=status
            )

    def claim_and_submit(self) -> int:
        free = self.options.concurrency - self.in_flight
        rows = TaskExecution.objects.claim(
            free,
            worker_id=self.worker_id,
            queues=self.options.queues,
            runner=self.dispatcher.runner,
            backend=self.options.backend,
        )
        for row in rows:
            self._running[str(row.pk)] = row
            row.ray_handle = self.dispatcher.submit(job_for(row))
        if rows:
            TaskExecution.objects.bulk_update(rows, ["ray_handle"])
            announce_started(rows, self.worker_id)
        return len(rows)

    def run(self, stop: threading.Event | None = None) -> None:
        """Loop until ``stop`` is set (or, in burst mode, until nothing is left to do)."""
        stop = stop or threading.Event()
        self.lease.acquire()
        logger.info(
            "django-ray worker %s started: queues=%s runner=%s concurrency=%d ray=%s",
            self.worker_id,
            ",".join(self.options.queues),
            self.dispatcher.runner,
            self.options.concurrency,
            self.options.ray_address or "local (embedded)",
        )
        try:
            while not stop.is_set():
                tick = self.tick()
                if self.in_flight:
                    self.collect(timeout=self.options.busy_wait_seconds)
                elif self.options.burst and not tick.claimed:
                    break
                elif not tick.claimed:
                    stop.wait(self.options.idle_wait_seconds)
            self.drain()
        finally:
            self.lease.release()
        logger.info("django-ray worker %s stopped", self.worker_id)

    def drain(self) -> None:
        """Wait for every submitted attempt to finish and record it."""
        while self.in_flight:
            self.heartbeat_if_due()
            self.collect(timeout=self.options.busy_wait_seconds)


def job_for(row: TaskExecution) -> Job:
    return Job(
        execution_id=str(row.pk),
        attempt=row.attempt,
        task_path=row.task_path,
        args=row.args,
        kwargs=row.kwargs,
        backend=row.backend,
        takes_context=row.takes_context,
        enqueued_at=row.enqueued_at,
        started_at=row.started_at,
        worker_ids=list(row.worker_ids),
        options=dict(row.options),
        claim_token=str(row.claim_token),
    )
