"""The ``ray_job`` dispatcher: one Ray Job per attempt, through one Jobs API client.

The job's entrypoint (``django_ray.runtime.job_entrypoint``) records its own
outcome in the database, so a job that ends after its worker died still lands.
The worker polls job statuses in one request per poll and only records what a
job could not: an end (FAILED, STOPPED) without an outcome. It also stops the jobs
that run past their time limit; such an end is recorded as a ``TaskTimeout``.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone

from django_ray.lifecycle.errors import error_data
from django_ray.runtime.connection import RayUnavailable, merge_runtime_env, worker_runtime_env
from django_ray.runtime.job import Job, Outcome, timeout_error

logger = logging.getLogger("django_ray.runtime")

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
LOG_TAIL_CHARS = 4000


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
    ) -> None:
        from ray.job_submission import JobSubmissionClient

        self.dashboard_url = dashboard_url
        self._client = JobSubmissionClient(dashboard_url)
        self._runtime_env = dict(runtime_env or {})
        self._python = python
        self._poll_seconds = poll_seconds
        self._next_poll = 0.0
        self._in_flight: dict[str, Job] = {}
        self._timed_out: set[str] = set()  # stopped at their time limit
        self.statuses: dict[str, str] = {}

    @classmethod
    def for_local_cluster(cls, dashboard_url: str, runtime_env: Mapping[str, Any]) -> Any:
        """Jobs on a Ray started by this process run this interpreter, not PATH's python."""
        return cls(dashboard_url, runtime_env, python=shlex.quote(sys.executable))

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
        self._in_flight[sid] = job
        return sid

    def wait(self, timeout: float, at_least: int = 1) -> list[Outcome]:
        """Outcomes of jobs that ended, polling the Jobs API at most every ``poll_seconds``."""
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

    def poll(self) -> list[Outcome]:
        self._stop_overdue(timezone.now())
        try:
            listed = self._client.list_jobs()
        except OSError as exc:
            raise RayUnavailable(f"The Ray Jobs API at {self.dashboard_url}: {exc}") from exc
        details = {job.submission_id: job for job in listed}
        outcomes = []
        for sid, job in list(self._in_flight.items()):
            detail = details.get(sid)
            if detail is None:
                continue
            status = str(getattr(detail.status, "value", detail.status))
            self.statuses[job.execution_id] = status
            if status in TERMINAL:
                del self._in_flight[sid]
                self.statuses.pop(job.execution_id, None)
                # Ray's message may carry the whole log; its first line says what happened.
                message = (detail.message or "").strip().splitlines()[:1]
                outcomes.append(self._ended(sid, job, status, "".join(message)))
        return outcomes

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

    def _ended(self, sid: str, job: Job, status: str, message: str) -> Outcome:
        timed_out = sid in self._timed_out
        self._timed_out.discard(sid)
        if status == "SUCCEEDED":
            return Outcome(execution_id=job.execution_id, attempt=job.attempt, recorded=True)
        if timed_out:  # unless the job recorded an outcome before it was stopped
            error = timeout_error(job)
            return Outcome(
                execution_id=job.execution_id, attempt=job.attempt, error=error, recorded=True
            )
        kind = RayJobStopped if status == "STOPPED" else RayJobFailed
        return Outcome(
            execution_id=job.execution_id,
            attempt=job.attempt,
            error=error_data(
                kind,
                f"Ray job {sid} ended {status}: {message}",
                traceback=f"Tail of the job's logs:\n{self._logs(sid)}",
            ),
            lost=True,
            recorded=True,
        )

    def _logs(self, sid: str) -> str:
        try:
            return self._client.get_job_logs(sid)[-LOG_TAIL_CHARS:]
        except Exception as exc:  # the logs are a courtesy; the status is the fact
            return f"(logs of {sid} unavailable: {exc})"

    def adopt(self, job: Job) -> bool:
        """Monitor a job another worker submitted (its worker's lease expired)."""
        self._in_flight[submission_id(job.execution_id, job.attempt)] = job
        return True

    def job_status(self, execution_id: str, attempt: int) -> str | None:
        """What Ray says of this attempt's job; None if Ray has no such job."""
        try:
            status = self._client.get_job_status(submission_id(execution_id, attempt))
        except RuntimeError as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                return None
            raise
        return str(getattr(status, "value", status))

    def cancel(self, execution_id: str) -> None:
        """Stop the attempt's job; the next poll sees it STOPPED."""
        for sid, job in self._in_flight.items():
            if job.execution_id == execution_id:
                self._client.stop_job(sid)
