"""Test helpers shipped with django-ray: an in-process dispatcher and a worker drain.

For unit tests of code that enqueues tasks: the real worker loop and the real
recording path run, only Ray is replaced by a call in this process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from django.tasks import task_backends

from django_ray.conf import get_settings
from django_ray.runtime.execute import run_packed
from django_ray.runtime.job import Job, Outcome
from django_ray.worker.loop import Worker, WorkerOptions


class InProcessDispatcher:
    """Runs each job synchronously at submit time, in this process and thread."""

    runner = "ray_core"
    attempts_outlive_worker = False
    statuses: Mapping[str, str] = MappingProxyType({})

    def __init__(self) -> None:
        self._done: list[Outcome] = []
        self.submitted: list[Job] = []
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        return len(self._done)

    def submit(self, job: Job) -> str:
        self.submitted.append(job)
        # The same packed form as on Ray Core, so unit tests go through it too.
        self._done.append(Outcome.unpack(job, run_packed(job.pack())))
        self.peak_in_flight = max(self.peak_in_flight, len(self._done))
        return f"in-process-{len(self.submitted)}"

    def flush(self) -> dict[str, str]:
        return {}  # every job ran at submit time

    def cancel(self, execution_id: str) -> None:
        """Nothing to stop: every job ran to its end at submit time."""

    def wait(self, timeout: float, at_least: int = 1) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def adopt(self, job: Job) -> bool:
        return False

    def job_status(self, execution_id: str, attempt: int) -> str | None:
        return None

    def reset(self) -> list[Outcome]:
        return []


def drain(
    queues: Sequence[str] | None = None,
    *,
    backend: str = "default",
    dispatcher: InProcessDispatcher | None = None,
    concurrency: int | None = None,
) -> Worker:
    """Run a worker in burst mode until no claimable task is left; returns the worker."""
    settings = get_settings()
    worker = Worker(
        WorkerOptions(
            queues=tuple(queues or sorted(task_backends[backend].queues) or ["default"]),
            concurrency=concurrency or settings.default_concurrency,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            lease_seconds=settings.worker_lease_seconds,
            backend=backend,
            burst=True,
            idle_wait_seconds=0,
            busy_wait_seconds=0,
        ),
        dispatcher or InProcessDispatcher(),
    )
    worker.run()
    return worker
