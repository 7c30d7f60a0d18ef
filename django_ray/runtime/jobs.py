"""The ``ray_job`` dispatcher: one Ray Job per attempt, through one Jobs API client.

The job's entrypoint (``django_ray.runtime.job_entrypoint``) records its own
outcome in the database, so a job that ends after its worker died still lands.
The worker asks after each of its own jobs by id, so a poll costs the same however
long the cluster's job history is (``list_jobs()`` returns every job Ray ever ran),
and only records what a job could not: an end (FAILED, STOPPED) without an outcome.
It also stops the jobs that run past their time limit; such an end is recorded as a
``TaskTimeout``. Once recorded, finished jobs can be deleted from Ray's history.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone

from django_ray.lifecycle.errors import error_data
from django_ray.runtime.connection import RayUnavailable, merge_runtime_env, worker_runtime_env
from django_ray.runtime.job import Job, Outcome, timeout_error

logger = logging.getLogger("django_ray.runtime")

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
LOG_TAIL_LINES = 50
"""A failed job's error shows this many of its last log lines, read as a tail."""
LOG_TAIL_CHARS = 4000
JOB_LOG_FILE = "job-driver-{}.log"
"""Where Ray keeps a job driver's output, in the logs folder of the driver's node."""


class RayJobFailed(Exception):
    """A Ray Job ended FAILED without recording an outcome (driver crash, OOM kill...)."""


class RayJobStopped(RayJobFailed):
    """A Ray Job was stopped (from the dashboard, the CLI or a cancel) before recording."""


class RayJobEndedWithoutOutcome(RayJobFailed):
    """A Ray Job ended SUCCEEDED but its attempt still owns the row: nothing was recorded."""


def submission_id(execution_id: str, attempt: int) -> str:
    """One id per attempt: resubmitting the same attempt finds the same job."""
    return f"django-ray-{execution_id}-{attempt}"


class RayJobDispatcher:
    """Submits each attempt as a Ray Job and reports the jobs that ended."""

    runner = "ray_job"
    attempts_outlive_worker = True

    def __init__(
        self,
        dashboard_url: str,
        runtime_env: Mapping[str, Any] | None = None,
        *,
        python: str = "python",
        poll_seconds: float = 0.5,
        delete_finished: bool = False,
    ) -> None:
        from ray.job_submission import JobSubmissionClient

        self.dashboard_url = dashboard_url
        self._client = JobSubmissionClient(dashboard_url)
        self._runtime_env = dict(runtime_env or {})
        self._python = python
        self._poll_seconds = poll_seconds
        self._next_poll = 0.0
        self._in_flight: dict[str, Job] = {}
        # When each job is next asked after (monotonic; absent: at the next poll), and
        # when this worker began to watch it.
        self._next_check: dict[str, float] = {}
        self._watched_since: dict[str, float] = {}
        self._timed_out: set[str] = set()  # stopped at their time limit
        self._delete_finished = delete_finished
        self._finished: deque[tuple[float, str]] = deque()  # (when to delete, submission id)
        self.statuses: dict[str, str] = {}

    @classmethod
    def for_local_cluster(
        cls, dashboard_url: str, runtime_env: Mapping[str, Any], **options: Any
    ) -> Any:
        """Jobs on a Ray started by this process run this interpreter, not PATH's python."""
        return cls(dashboard_url, runtime_env, python=shlex.quote(sys.executable), **options)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def entrypoint(self, job: Job) -> str:
        return (
            f"{self._python} -m django_ray.runtime.job_entrypoint "
            f"{job.execution_id} {job.attempt} {job.claim_token}"
        )

    def flush(self) -> dict[str, str]:
        return {}  # every job is submitted at once

    def submit(self, job: Job) -> str:
        """Submit the attempt's job, or adopt it if this attempt was submitted before."""
        sid = submission_id(job.execution_id, job.attempt)
        options = job.options
        try:
            self._client.submit_job(
                entrypoint=self.entrypoint(job),
                submission_id=sid,
                runtime_env=worker_runtime_env(
                    merge_runtime_env(self._runtime_env, options.get("runtime_env"))
                ),
                metadata={"django_ray_task": job.task_path, "django_ray_attempt": str(job.attempt)},
                entrypoint_num_cpus=options.get("num_cpus"),
                entrypoint_num_gpus=options.get("num_gpus"),
                entrypoint_memory=options.get("memory"),
                entrypoint_resources=dict(options["resources"]) if "resources" in options else None,
            )
        except RuntimeError as exc:
            if "already exists" not in str(exc):
                raise
            logger.info("Ray job %s already exists; monitoring it instead of resubmitting", sid)
        except OSError as exc:  # requests' connection errors are OSErrors
            raise RayUnavailable(f"The Ray Jobs API at {self.dashboard_url}: {exc}") from exc
        self._watch(sid, job)
        return sid

    def wait(self, timeout: float, at_least: int = 1) -> list[Outcome]:
        """Outcomes of jobs that ended, polling the Jobs API at most every ``poll_seconds``."""
        self._delete_due()
        if not self._in_flight:
            return []
        delay = self._next_poll - time.monotonic()
        if delay > timeout:
            time.sleep(timeout)
            return []
        time.sleep(max(delay, 0))
        self._next_poll = time.monotonic() + self._poll_seconds
        return self.poll()

    def reset(self) -> list[Outcome]:
        """Nothing to reconnect (HTTP); jobs keep running on the cluster and are polled again."""
        return []

    CHECK_AT_MOST_EVERY = 5.0
    """A job is asked after at least this often (seconds), however long it runs."""

    def poll(self) -> list[Outcome]:
        """Ask after each job in flight that is due, by id: never a listing of the cluster's
        whole job history. A job is due every ``poll_seconds`` at first, then less often
        the longer it runs (a quarter of its age, at most ``CHECK_AT_MOST_EVERY``): its
        entrypoint records its outcome itself, so a later look only frees its slot later."""
        self._stop_overdue(timezone.now())
        now = time.monotonic()
        outcomes = []
        for sid, job in list(self._in_flight.items()):
            if self._next_check.get(sid, now) > now:
                continue
            detail = self._detail(sid)
            age = now - self._watched_since.get(sid, now)
            self._next_check[sid] = now + min(
                max(self._poll_seconds, age / 4), self.CHECK_AT_MOST_EVERY
            )
            if detail is None:
                continue  # not known to Ray (yet): recovery decides about such rows
            status = str(getattr(detail.status, "value", detail.status))
            self.statuses[job.execution_id] = status
            if status in TERMINAL:
                self._end_watch(sid, job)
                # Ray's message may carry the whole log; its first line says what happened.
                message = "".join((detail.message or "").strip().splitlines()[:1])
                node = detail.driver_node_id or ""
                outcomes.append(self._ended(sid, job, status, message, node))
                self._forget(sid)
        return outcomes

    def _end_watch(self, sid: str, job: Job) -> None:
        del self._in_flight[sid]
        self._next_check.pop(sid, None)
        self._watched_since.pop(sid, None)
        self.statuses.pop(job.execution_id, None)

    def _detail(self, sid: str) -> Any:
        """Ray's JobDetails of one job, or None when Ray has no job of that id."""
        try:
            return self._client.get_job_info(sid)
        except OSError as exc:  # requests' connection errors are OSErrors
            raise RayUnavailable(f"The Ray Jobs API at {self.dashboard_url}: {exc}") from exc
        except RuntimeError as exc:
            if _missing(exc):
                return None
            raise

    def _forget(self, sid: str) -> None:
        """Delete an ended job from Ray's history later (``RAY_JOB_DELETE_FINISHED``)."""
        if self._delete_finished:
            self._finished.append((time.monotonic() + self.DELETE_AFTER_SECONDS, sid))

    DELETE_AFTER_SECONDS = 10.0
    """Ray's job manager watches a job's supervisor until it exits, about a second after
    the job ended; a job deleted before then is written back as FAILED (Ray 2.60)."""

    def _delete_due(self) -> None:
        """Delete the ended jobs whose outcome the worker has long recorded. A worker that
        stops first leaves its last few jobs in the history."""
        now = time.monotonic()
        while self._finished and self._finished[0][0] <= now:
            sid = self._finished.popleft()[1]
            try:
                self._client.delete_job(sid)
            except (OSError, RuntimeError) as exc:  # a courtesy to the head node, not a fact
                logger.warning("Could not delete finished Ray job %s: %s", sid, exc)

    def _stop_overdue(self, now: datetime) -> None:
        """Stop the jobs past their time limit (counted from the attempt's start as its row
        has it, so a job adopted from a dead worker is held to the same limit)."""
        for sid, job in self._in_flight.items():
            deadline = job.deadline
            if deadline is None or deadline > now or sid in self._timed_out:
                continue
            logger.warning(
                "Ray job %s (%s) ran past its time limit of %s s; stopping it",
                *(sid, job.task_path, job.timeout),
            )
            try:
                self._client.stop_job(sid)
            except OSError as exc:
                raise RayUnavailable(f"The Ray Jobs API at {self.dashboard_url}: {exc}") from exc
            except RuntimeError as exc:  # it ended meanwhile: the poll tells how
                logger.info("Stopping Ray job %s: %s", sid, exc)
            self._timed_out.add(sid)
            self._next_check.pop(sid, None)

    def _ended(self, sid: str, job: Job, status: str, message: str, node: str) -> Outcome:
        """How the job ended; ``recorded``: its entrypoint may have recorded it already."""
        ended = Outcome(execution_id=job.execution_id, attempt=job.attempt, recorded=True)
        timed_out = sid in self._timed_out
        self._timed_out.discard(sid)
        if status == "SUCCEEDED":
            return dataclasses.replace(ended, node=node)
        if timed_out:  # unless the job recorded an outcome before it was stopped
            return dataclasses.replace(ended, error=timeout_error(job), node=node)
        kind = RayJobStopped if status == "STOPPED" else RayJobFailed
        error = error_data(
            kind,
            f"Ray job {sid} ended {status}: {message}",
            traceback=f"Tail of the job's logs:\n{self.log_tail(sid, node)}",
        )
        return dataclasses.replace(ended, error=error, lost=True, node=node)

    def log_tail(self, sid: str, node: str, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of a job's driver log, read as a tail on its node (never
        the whole log), at most :data:`LOG_TAIL_CHARS` characters."""
        if not node:
            return f"(logs of {sid} unavailable: Ray names no driver node for it)"
        try:
            # The dashboard's log API reads the file's tail on its node. The Jobs client
            # carries the cluster's address and auth headers; Ray's own get_log() wants
            # a GCS address, which a ray_job worker need not have.
            response = self._client._do_request(
                "GET",
                "/api/v0/logs/file",
                params={"node_id": node, "filename": JOB_LOG_FILE.format(sid), "lines": lines},
                timeout=10,
            )
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            return response.text[-LOG_TAIL_CHARS:]
        except Exception as exc:  # the logs are a courtesy; the status is the fact
            return f"(logs of {sid} unavailable: {exc})"

    def adopt(self, job: Job) -> bool:
        """Monitor a job another worker submitted (its worker's lease expired)."""
        self._watch(submission_id(job.execution_id, job.attempt), job)
        return True

    def _watch(self, sid: str, job: Job) -> None:
        self._in_flight[sid] = job
        self._watched_since[sid] = time.monotonic()
        self._next_check.pop(sid, None)

    def job_status(self, execution_id: str, attempt: int) -> str | None:
        """What Ray says of this attempt's job; None if Ray has no such job."""
        try:
            status = self._client.get_job_status(submission_id(execution_id, attempt))
        except RuntimeError as exc:
            if _missing(exc):
                return None
            raise
        return str(getattr(status, "value", status))

    def cancel(self, execution_id: str) -> None:
        """Stop the attempt's job; the next poll sees it STOPPED."""
        for sid, job in self._in_flight.items():
            if job.execution_id == execution_id:
                self._client.stop_job(sid)
                self._next_check.pop(sid, None)  # asked after at the next poll


def _missing(exc: RuntimeError) -> bool:
    """Whether the Jobs API said there is no such job."""
    return "does not exist" in str(exc) or "404" in str(exc)
