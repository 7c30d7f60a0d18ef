"""What the worker loop needs of wherever attempts run: the ``Dispatcher`` protocol.

Two dispatchers run on Ray (:mod:`~django_ray.runtime.core`,
:mod:`~django_ray.runtime.jobs`); :class:`django_ray.testing.InProcessDispatcher`
runs jobs in the test process. What differs between runners is declared here,
never found out by the runner's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from django_ray.runtime.job import Job, Outcome


class Dispatcher(Protocol):
    runner: str
    """Recorded on the rows this dispatcher runs (``ray_core``, ``ray_job``)."""

    attempts_outlive_worker: bool
    """Whether an attempt goes on when this worker stops (a Ray Job does). Such attempts are
    left running at shutdown for another worker to adopt, and their handles are written at
    once; others are handed back to the queue."""

    @property
    def in_flight(self) -> int: ...

    @property
    def statuses(self) -> Mapping[str, str]:
        """What Ray says of attempts still in flight, by execution id (e.g. PENDING)."""
        ...

    def submit(self, job: Job) -> str:
        """Start the attempt; returns its Ray handle, or "" when it waits for :meth:`flush`.
        Raises ``RayUnavailable``, whose ``unstarted`` names the ids it gave up besides."""
        ...

    def flush(self) -> Mapping[str, str]:
        """Start the attempts that ``submit`` left waiting (to send several at once);
        returns the handles of those started, by execution id. Raises ``RayUnavailable``
        (``unstarted``: the ids given up)."""
        ...

    def wait(self, timeout: float, at_least: int = 1) -> list[Outcome]:
        """Outcomes of attempts that ended, waiting up to ``timeout`` for ``at_least``."""
        ...

    def cancel(self, execution_id: str) -> None:
        """Stop the attempt on Ray; its outcome comes back through ``wait``."""
        ...

    def adopt(self, job: Job) -> bool:
        """Monitor an attempt another worker started, if this dispatcher can; False if not."""
        ...

    def job_status(self, execution_id: str, attempt: int) -> str | None:
        """What Ray says of an attempt another worker started; None if it cannot tell."""
        ...

    def reset(self) -> list[Outcome]:
        """Connect to Ray again; attempts lost with the old connection, as outcomes."""
        ...
