"""``RayPool``: a Celery execution pool whose tasks run on Ray.

Select it with ``celery -A proj worker -P django_ray``, ``worker_pool =
"celery_bridge.pool:RayPool"``, or ``CELERY_CUSTOM_WORKER_POOL`` and ``-P custom``.
Kombu keeps transport and acknowledgements in the worker; each task runs
Celery's own tracer in a Ray worker process (see :mod:`celery_bridge.remote`),
through django-ray's one Ray core (:mod:`django_ray.runtime.calls`, by way of
:mod:`celery_bridge.runs`), and the tracer's outcome comes back to Celery's
callbacks. ``-c N`` is the number of tasks in flight on Ray.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from queue import Empty, SimpleQueue
from typing import Any

from celery import Celery, current_app
from celery.concurrency.base import BasePool

from celery_bridge import logs
from celery_bridge.config import (
    APP_ENV,
    app_spec,
    bridge_settings,
    check_serializers,
    forwarded_environ,
    retry_policy,
)
from celery_bridge.connect import connect_keeping_worker_process
from celery_bridge.records import NO_RECORDS, ExecutionRecords, records_for
from celery_bridge.remote import AppSpec
from celery_bridge.runs import FINAL, Completion, Job, Kind, Runs
from celery_bridge.stats import pool_info, queues_of, ray_address
from django_ray.runtime.connection import merge_runtime_env
from django_ray.runtime.remote import Recycle

logger = logging.getLogger("celery_bridge")
# Above Linux's largest pid_max (2**22): the pids Celery sees for plain Ray tasks.
PLAIN_TASK_PIDS = 1 << 22


class ApplyResult:
    """What the worker keeps of one applied task: enough to terminate it."""

    def __init__(self, pool: RayPool, job: Job) -> None:
        self._pool = pool
        self.job = job

    def terminate(self, signal: int | None = None) -> None:
        self._pool.terminate_job(self.job.pid, signal)


class RayPool(BasePool):
    """Runs each task's tracer on Ray; Ray's completion callbacks bring the outcomes back."""

    # The worker's semaphore holds a task until a slot is free, so ``-c N`` is
    # the number on Ray; the pool releases a slot once Celery has the outcome.
    uses_semaphore = True
    # Callbacks and acks run on the event loop; a signal handler only sets a flag.
    signal_safe = False
    body_can_be_buffer = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app: Celery = self.app or current_app._get_current_object()
        check_serializers(self.app)
        self._semaphore = self.options.get("semaphore")
        self._hostname = str((self.options.get("initargs") or (None, None))[1] or "celery")
        self._numbers = itertools.count(1)
        self._slots = threading.Condition()
        self._held = 0
        self._fire_lock = threading.RLock()
        self._ready: SimpleQueue[Completion] = SimpleQueue()
        self._hub: Any = None
        self._draining = False
        self._runs: Runs | None = None
        self._firing: threading.Thread | None = None
        self._records: ExecutionRecords = NO_RECORDS
        self._job_of_pid: dict[int, int] = {}
        self._restarts = 0
        self._unaccepted: list[tuple[Job, Any]] = []  # waiting for a chunk
        self._flush_due = False

    def on_start(self) -> None:
        app = self.app
        settings = bridge_settings(app)
        spec = app_spec(app, self._hostname)
        runtime_env = self._runtime_env(settings, spec)
        connect_keeping_worker_process(settings.ray_address, runtime_env)
        self._runs = Runs(
            spec,
            runtime_env,
            settings.ray_options,
            deliver=self._deliver,
            policy=lambda: retry_policy(app),
            warm_actors=settings.warm_actors,
            recycle=Recycle(
                max_calls=int(self.options.get("maxtasksperchild") or 0),
                max_memory_kib=int(self.options.get("max_memory_per_child") or 0),
            ),
        )
        self._runs.calls.resize(self.limit)
        self._records = records_for(settings, self._hostname, queues_of(app), self.limit)
        logger.info(
            "django_ray pool started: app=%s ray=%s limit=%s",
            *(spec.app_name, ray_address(), self.limit),
        )

    def restart(self) -> None:
        """``pool_restart`` (and ``celery_worker.reload()``): later tasks run in fresh Ray
        worker processes, which import the app's modules anew; tasks on Ray finish there."""
        assert self._runs is not None, "the pool is not started"
        self._restarts += 1
        spec = app_spec(self.app, self._hostname, self._restarts)
        self._runs.switch(spec, self._runtime_env(bridge_settings(self.app), spec))
        logger.info("django_ray pool restarted: app=%s", spec.identity)

    @staticmethod
    def _runtime_env(settings: Any, spec: AppSpec) -> dict[str, Any]:
        # The app's identity in the environment gives each app (and each restart) Ray
        # worker processes of its own.
        env_vars = {**forwarded_environ(os.environ), APP_ENV: spec.identity}
        return merge_runtime_env(settings.runtime_env, {"env_vars": env_vars})

    def register_with_event_loop(self, loop: Any) -> None:
        self._hub = loop

    def _fire_in_a_thread(self) -> None:
        """Without an event loop (a threaded consumer), a thread of the pool fires the
        callbacks: never Ray's callback thread, as they may apply the next task."""
        if self._hub is None and self._firing is None:
            self._firing = threading.Thread(
                target=self._fire_forever, name="celery-bridge-callbacks", daemon=True
            )
            self._firing.start()

    def _fire_forever(self) -> None:
        while not self._draining:
            try:
                completion = self._ready.get(timeout=0.1)
            except Empty:
                continue
            self._fire(completion)
            self._flush()

    def on_apply(
        self,
        target: Any,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Any = None,
        accept_callback: Any = None,
        error_callback: Any = None,
        timeout_callback: Any = None,
        soft_timeout: float | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> ApplyResult:
        # ``target`` is fast_trace_task or trace_task_ret; on Ray, the bootstrapped
        # app always runs fast_trace_task with the same arguments.
        assert self._runs is not None, "the pool is not started"
        self._fire_in_a_thread()
        trace_args = tuple(args or ())
        task = self.app.tasks.get(trace_args[0])
        job = Job(
            number=next(self._numbers),
            trace_args=trace_args,
            callback=callback,
            error_callback=error_callback,
            timeout_callback=timeout_callback,
            soft_timeout=soft_timeout or self.options.get("soft_timeout"),
            hard_timeout=timeout or self.options.get("timeout"),
            ray_options=dict(getattr(task, "ray_options", None) or {}),
        )
        self._take_slot()
        with self._fire_lock:
            if self._runs.start(job):
                # Tasks handed over in one pass of the event loop go to Ray together at
                # its end (at once without one): a burst of short ones shares a call.
                self._unaccepted.append((job, accept_callback))
                self._flush_soon()
            else:
                self._accept(job, accept_callback)
        return ApplyResult(self, job)

    def _accept(self, job: Job, accept_callback: Any) -> None:
        # The Ray worker's pid when the task runs alone on a warm actor; else one above
        # Linux's pid_max, so that it names this job alone.
        assert self._runs is not None
        pid = self._runs.pid(job.number) or PLAIN_TASK_PIDS + job.number
        self._job_of_pid[pid] = job.number
        job.pid = pid
        if accept_callback:
            accept_callback(pid, time.monotonic())
        self._records.started(job)

    def _flush_soon(self) -> None:
        if self._hub is None or self._draining:
            self._flush()
        elif not self._flush_due:
            self._flush_due = True
            self._hub.call_soon(self._flush)

    def _flush(self) -> None:
        """Send the tasks that wait for a chunk; accept those that left the wait."""
        self._flush_due = False
        if self._runs is None or not self._unaccepted:
            return
        with self._fire_lock:
            self._runs.flush()
            waiting, self._unaccepted = self._unaccepted, []
            for job, accept_callback in waiting:
                if self._runs.calls.queued(job.number):
                    self._unaccepted.append((job, accept_callback))
                else:
                    self._accept(job, accept_callback)

    def terminate_job(self, pid: int, signal: int | None = None) -> None:
        """Revoke with terminate: cancel the task on Ray, killing its worker process."""
        number = self._job_of_pid.get(pid)
        if self._runs is not None and number is not None:
            self._runs.terminate(number)

    def on_stop(self) -> None:
        """Warm shutdown: wait for every task on Ray and fire its callbacks (acks) here."""
        if self._runs is None:
            return
        self._draining = True
        if self._firing is not None:
            self._firing.join()
        self._runs.calls.hurry()  # a lost task waiting out its backoff runs now
        while self._runs.jobs or not self._ready.empty():
            self._flush()
            try:
                self._fire(self._ready.get(timeout=0.1))
            except Empty:
                continue
        self._runs.calls.close()
        self._records.close()

    def on_terminate(self) -> None:
        """Cold shutdown: cancel what runs on Ray; unacked messages are redelivered."""
        if self._runs is not None:
            self._draining = True
            self._runs.terminate_all()
            self._runs.calls.close()
        self._records.close(timeout=5)

    def grow(self, n: int = 1) -> None:
        self.limit += n
        self._resized()
        if self._semaphore is not None:
            self._semaphore.grow(n)
        with self._slots:
            self._slots.notify_all()

    def shrink(self, n: int = 1) -> None:
        if self.limit - n < 1:
            raise ValueError(f"Can't shrink the pool below 1 task in flight (limit {self.limit}).")
        self.limit -= n
        if self._semaphore is not None:
            self._semaphore.shrink(n)
        self._resized()

    def _resized(self) -> None:
        if self._runs is not None:
            self._runs.calls.resize(self.limit)
        self._records.resize(self.limit)

    def _get_info(self) -> dict[str, Any]:
        return {**super()._get_info(), **pool_info(self._runs, self.limit)}

    def _take_slot(self) -> None:
        # With the event loop the worker's semaphore already holds the task back;
        # without it (threaded consumer) the pool blocks here, as billiard's putlocks do.
        with self._slots:
            while self._semaphore is None and self.putlocks and self._held >= self.limit:
                self._slots.wait()
            self._held += 1

    def _release_slot(self) -> None:
        with self._slots:
            self._held -= 1
            self._slots.notify()
        if self._semaphore is not None:
            self._semaphore.release()

    def _deliver(self, completion: Completion) -> None:
        """From Ray's callback thread (or the calls' watcher): queue the completion for
        the event loop's thread; while draining, for the thread that drains; without an
        event loop, for the pool's firing thread. Never fired here: Celery's callbacks
        may apply the next task, and Ray's callback thread must not call into Ray."""
        self._ready.put(completion)
        if self._hub is not None and not self._draining:
            self._hub.call_soon(self._fire_ready)

    def _fire_ready(self) -> None:
        while True:
            try:
                completion = self._ready.get_nowait()
            except Empty:
                break
            self._fire(completion)
        self._flush()  # what the completions' freed slots let the consumer apply

    def _fire(self, completion: Completion) -> None:
        job, kind, value = completion.job, completion.kind, completion.value
        with self._fire_lock:
            try:
                logs.replay(completion.records)
                if kind is Kind.RESULT and job.callback:
                    job.callback(value)
                elif kind is Kind.ERROR and job.error_callback:
                    job.error_callback(value)
                elif kind in (Kind.SOFT_TIMEOUT, Kind.HARD_TIMEOUT) and job.timeout_callback:
                    job.timeout_callback(kind is Kind.SOFT_TIMEOUT, value)
            except Exception:
                logger.exception("django_ray pool: Celery's %s callback for %s failed", kind, job)
            finally:
                self._records.record(completion)
                if kind in FINAL:
                    # The pid may run the next job already (its actor was free first).
                    if self._job_of_pid.get(job.pid) == job.number:
                        del self._job_of_pid[job.pid]
                    self._release_slot()
