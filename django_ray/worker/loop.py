"""The worker: one loop that claims rows, hands them to a dispatcher and records outcomes."""

from __future__ import annotations

import logging
import threading
import time

from django.utils import timezone

from django_ray.exceptions import InvalidSignature
from django_ray.lifecycle import announce, attempts
from django_ray.lifecycle.outcomes import DATABASE_ERRORS, fail_unrunnable, record_outcomes
from django_ray.models import TaskExecution
from django_ray.runtime.connection import RayUnavailable
from django_ray.runtime.dispatcher import Dispatcher
from django_ray.runtime.job import Job, Outcome
from django_ray.signing import verify
from django_ray.worker.leases import Lease
from django_ray.worker.options import Tick, WorkerOptions, new_worker_id
from django_ray.worker.outage import Outage
from django_ray.worker.recovery import recover
from django_ray.worker.summary import Summary
from django_ray.worker.wakeup import Wakeup

logger = logging.getLogger("django_ray.worker")

CANCEL_CHECK_SECONDS = 1.0
# With many attempts in flight, the worker records and claims in batches of about
# this share of them: a statement per batch, not per handful of rows, while the
# rest keep Ray busy. With few in flight, it acts on each one as it ends.
BATCH_SHARE = 8
# Ray Core handles of attempts still running are written this often; an attempt
# that ends sooner gets its handle written with its outcome, in the same UPDATE.
HANDLE_WRITE_SECONDS = 1.0


class Worker:
    """Drives rows from READY to an end. ``tick()`` is one pass; ``run()`` repeats it."""

    def __init__(
        self, options: WorkerOptions, dispatcher: Dispatcher, *, worker_id: str | None = None
    ) -> None:
        self.options = options
        self.dispatcher = dispatcher
        self.worker_id = worker_id or new_worker_id()
        self.lease = Lease(
            self.worker_id,
            queues=options.queues,
            concurrency=options.concurrency,
            runner=dispatcher.runner,
            heartbeat_seconds=options.heartbeat_seconds,
            lease_seconds=options.lease_seconds,
            ray_address=options.ray_address,
        )
        self._running: dict[str, TaskExecution] = {}
        self._unrecorded: list[Outcome] = []
        self._next_recovery = 0.0
        self._next_cancel_check = 0.0
        self._unwritten_handles: list[TaskExecution] = []
        self._next_handle_write = 0.0
        self._wakeup = Wakeup(options.queues)
        self.summary = Summary(options.summary_seconds)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def tick(self) -> Tick:
        """One pass: heartbeat, record what finished, stop what was cancelled,
        recover what others left, then claim up to the free slots and submit."""
        self.summary.log_if_due(self.in_flight)
        self.heartbeat_if_due()
        recorded = self.collect(timeout=0)
        self.write_handles_if_due()
        self.stop_cancelled()
        self.recover_if_due()
        claimed = self.claim_and_submit()
        return Tick(recorded=recorded, claimed=claimed)

    def heartbeat_if_due(self) -> None:
        """Extend the lease, and mark the rows in flight as monitored by this worker."""
        beat = self.lease.heartbeat_if_due()
        if beat is None:
            return
        if beat is False:
            self.forget_lost_rows()
        if self._running:
            attempts.beat(self.worker_id, self._running, timezone.now())

    def forget_lost_rows(self) -> None:
        """After a lapsed lease: stop tracking rows that were recovered or adopted meanwhile."""
        held = TaskExecution.objects.held_by(self.worker_id, self._running)
        still_ours = {str(pk) for pk in held.values_list("pk", flat=True)}
        lost = [self._running.pop(pk) for pk in set(self._running) - still_ours]
        announce.released(lost, self.worker_id)
        for row in lost:
            logger.warning(
                "Lease lapsed: %s [%s] attempt %d was taken over; no longer tracking it",
                row.task_path,
                row.pk,
                row.attempt,
            )

    def collect(self, timeout: float) -> int:
        """Record outcomes that came back; kept in memory until their commit succeeds."""
        self._unrecorded.extend(self.dispatcher.wait(timeout, at_least=self._batch()))
        self._flush()
        count = len(self._unrecorded)
        if self._unrecorded:
            self.summary.finished(record_outcomes(self._running, self._unrecorded))
            self._unrecorded = []
        self.report_ray_status()
        return count

    def report_ray_status(self) -> None:
        """Copy what Ray says of attempts in flight (e.g. PENDING on resources) to their rows."""
        changed: dict[str, list[str]] = {}
        for execution_id, status in self.dispatcher.statuses.items():
            row = self._running.get(execution_id)
            if row is not None and row.ray_status != status:
                row.ray_status = status
                changed.setdefault(status, []).append(execution_id)
        for status, ids in changed.items():
            attempts.report_ray_status(self.worker_id, ids, status)

    def write_handles_if_due(self, *, now: bool = False) -> None:
        """Store the Ray handles of attempts still in flight (those that ended have theirs)."""
        if not self._unwritten_handles or not (now or time.monotonic() >= self._next_handle_write):
            return
        rows = [r for r in self._unwritten_handles if r.ray_handle and str(r.pk) in self._running]
        attempts.write_handles(rows)
        self._unwritten_handles = []
        self._next_handle_write = time.monotonic() + HANDLE_WRITE_SECONDS

    def stop_cancelled(self) -> None:
        """Stop on Ray the attempts whose rows were marked cancelled (about once a second)."""
        if not self._running or time.monotonic() < self._next_cancel_check:
            return
        self._next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
        watched = [pk for pk, row in self._running.items() if row.cancelled_at is None]
        marked = TaskExecution.objects.held_by(self.worker_id, watched).filter(
            cancelled_at__isnull=False
        )
        for pk, cancelled_at in marked.values_list("pk", "cancelled_at"):
            row = self._running[str(pk)]
            row.cancelled_at = cancelled_at
            logger.info("Cancelling %s [%s] on Ray", row.task_path, row.pk)
            self.dispatcher.cancel(str(pk))

    def recover_if_due(self) -> None:
        if time.monotonic() < self._next_recovery:
            return
        self._next_recovery = time.monotonic() + self.options.heartbeat_seconds
        recover(self)

    def track(self, row: TaskExecution) -> bool:
        """Monitor an attempt this worker adopted instead of submitting (if it can)."""
        if not self.dispatcher.adopt(Job.of(row)):
            return False
        self._running[str(row.pk)] = row
        return True

    def _batch(self) -> int:
        return max(1, self.in_flight // BATCH_SHARE)

    def claim_and_submit(self) -> int:
        free = self.options.concurrency - self.in_flight
        if self.lease.lapsed or free < self._batch():
            return 0
        rows = attempts.claim(
            free,
            worker_id=self.worker_id,
            queues=self.options.queues,
            runner=self.dispatcher.runner,
            backend=self.options.backend,
        )
        rows = self._runnable(rows)
        sent = 0
        try:
            for row in rows:
                self._running[str(row.pk)] = row
                row.ray_handle = self.dispatcher.submit(Job.of(row))
                sent += 1
            self._flush()
        except RayUnavailable as exc:
            given_up = {str(key) for key in exc.unstarted}
            # Never submitted (or given up before Ray had them): not attempts lost.
            unsent = [r for i, r in enumerate(rows) if i >= sent or str(r.pk) in given_up]
            self._hand_back(unsent)
            self._submitted([row for row in rows[:sent] if row not in unsent])
            raise
        self._submitted(rows)
        return len(rows)

    def _flush(self) -> None:
        """Send the attempts the dispatcher keeps back to send several at once."""
        try:
            handles = self.dispatcher.flush()
        except RayUnavailable as exc:
            running = self._running
            self._hand_back([running[str(k)] for k in exc.unstarted if str(k) in running])
            raise
        for execution_id, handle in handles.items():
            row = self._running.get(execution_id)
            if row is not None and not row.ray_handle:
                row.ray_handle = handle
                self._unwritten_handles.append(row)

    def _runnable(self, rows: list[TaskExecution]) -> list[TaskExecution]:
        """The claimed rows that may run; the others are failed here, before anything they
        name is imported or handed to Ray (a row not written by ``enqueue()``)."""
        runnable = []
        for row in rows:
            try:
                verify(row)
            except InvalidSignature as exc:
                logger.error("Failing %s [%s]: %s", row.task_path, row.pk, exc)
                self.summary.finished([row] if fail_unrunnable(row, exc, timezone.now()) else [])
                continue
            runnable.append(row)
        return runnable

    def _submitted(self, rows: list[TaskExecution]) -> None:
        if not rows:
            return
        self._unwritten_handles += rows
        if self.dispatcher.attempts_outlive_worker:
            self.write_handles_if_due(now=True)  # its id matters at once (adoption, logs)
        self.summary.claimed += len(rows)
        announce.started(rows, self.worker_id)

    def reconnect_ray(self) -> None:
        """After Ray went away: connect again; attempts in flight on it are lost attempts."""
        try:
            self._unrecorded.extend(self.dispatcher.reset())
        except Exception as exc:  # still down: the next pass backs off and tries again
            logger.error("Ray is still unavailable: %s", exc)

    def _hand_back(self, rows: list[TaskExecution]) -> None:
        for row in rows:
            self._running.pop(str(row.pk), None)
            attempts.hand_back(row)
        announce.released(rows, self.worker_id)

    def run(self, stop: threading.Event | None = None) -> None:
        """Loop until ``stop`` is set (or, in burst mode, until nothing is left to do).

        A lost database connection does not end the loop: what is in flight
        stays in memory, and the pass is retried with backoff until the
        database answers again.
        """
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
        outage = Outage()
        try:
            while not stop.is_set():
                try:
                    tick = self.tick()
                    collected = (
                        self.collect(self.options.busy_wait_seconds) if self.in_flight else 0
                    )
                    outage.over()
                except DATABASE_ERRORS as exc:
                    stop.wait(outage.wait_after(exc, "Database"))
                    continue
                except RayUnavailable as exc:
                    stop.wait(outage.wait_after(exc, "Ray"))
                    self.reconnect_ray()
                    continue
                if self.in_flight or tick.claimed or tick.recorded or collected:
                    continue  # busy: a recorded failure may be due again at once
                if self.options.burst:
                    break
                self._wakeup.wait(stop, self.options.idle_wait_seconds)
            self.shutdown(finish=self.options.burst and not stop.is_set())
        finally:
            self._wakeup.close()
            self.lease.release()
        logger.info("django-ray worker %s stopped", self.worker_id)

    def shutdown(self, *, finish: bool) -> None:
        """Stop claiming; wait for what is in flight (for ever when ``finish``, else up to
        ``grace_seconds``); hand Ray Core attempts still running back to the queue.

        Ray Jobs are left running: once this worker's lease is released, another
        worker adopts them.
        """
        if self.dispatcher.attempts_outlive_worker and not finish:
            if self._running:
                logger.info("Leaving %d Ray job(s) running for adoption", len(self._running))
            return
        deadline = time.monotonic() + self.options.grace_seconds
        while self.in_flight and (finish or time.monotonic() < deadline):
            self.heartbeat_if_due()
            self.collect(timeout=self.options.busy_wait_seconds)
        left = list(self._running.values())
        for row in left:
            self.dispatcher.cancel(str(row.pk))
            if attempts.hand_back(row):
                logger.warning("Handed %s [%s] back to the queue", row.task_path, row.pk)
        self._running.clear()
        announce.released(left, self.worker_id)
