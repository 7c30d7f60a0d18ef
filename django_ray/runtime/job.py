"""What crosses the boundary to Ray and back: a ``Job`` out, an ``Outcome`` in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django_ray.lifecycle.errors import error_data

if TYPE_CHECKING:
    from django_ray.models import TaskExecution


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One attempt of one task execution, as plain data a Ray worker can run."""

    execution_id: str
    attempt: int
    task_path: str
    args: list[Any]
    kwargs: dict[str, Any]
    backend: str = "default"
    takes_context: bool = False
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    worker_ids: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    claim_token: str = ""
    # Known to the worker only (not packed): when this attempt started, as its row
    # records it, and its time limit in seconds (None: no limit).
    attempted_at: datetime | None = None
    timeout: int | None = None

    @property
    def deadline(self) -> datetime | None:
        """When this attempt runs out of time (counted from its start as the row has it)."""
        if self.timeout is None or self.attempted_at is None:
            return None
        return self.attempted_at + timedelta(seconds=self.timeout)

    def time_left(self, now: datetime) -> float | None:
        """Seconds until :attr:`deadline` (at least a millisecond); None without a limit."""
        deadline = self.deadline
        return None if deadline is None else max((deadline - now).total_seconds(), 0.001)

    @classmethod
    def of(cls, row: TaskExecution) -> Job:
        """The attempt a claimed row holds."""
        return cls(
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
            attempted_at=row.last_attempted_at,
            timeout=time_limit(row.options),
        )

    def pack(self) -> tuple[Any, ...]:
        """This job as plain values, the form it crosses to Ray Core in.

        Ray serializes plain values without pickle; a dataclass would be
        pickled and unpickled on every call, which costs more than the task
        itself for small tasks (benchmark B1).
        """
        return (
            self.execution_id, self.attempt, self.task_path, self.args, self.kwargs,
            self.backend, self.takes_context, _iso(self.enqueued_at), _iso(self.started_at),
            self.worker_ids, self.options, self.claim_token,
        )  # fmt: skip

    @classmethod
    def unpack(cls, packed: Sequence[Any]) -> Job:
        (
            execution_id, attempt, task_path, args, kwargs, backend, takes_context,
            enqueued_at, started_at, worker_ids, options, claim_token,
        ) = packed  # fmt: skip
        return cls(
            execution_id=execution_id,
            attempt=attempt,
            task_path=task_path,
            args=list(args),
            kwargs=dict(kwargs),
            backend=backend,
            takes_context=takes_context,
            enqueued_at=_from_iso(enqueued_at),
            started_at=_from_iso(started_at),
            worker_ids=list(worker_ids),
            options=dict(options),
            claim_token=claim_token,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one attempt ended: a JSON-ready ``value``, or an ``error`` (plain strings only)."""

    execution_id: str
    attempt: int
    value: Any = None
    # Where a value too large for the row was stored (see django_ray.results).
    reference: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    # The attempt was lost to infrastructure (Ray worker or node died, job
    # killed) rather than failed by the task's own code.
    lost: bool = False
    # The attempt recorded itself in the database (a Ray Job's entrypoint does);
    # the worker only reads what was recorded.
    recorded: bool = False
    # The Ray node the attempt ran on, as the Ray worker saw it ("" when unknown).
    node: str = ""

    @property
    def succeeded(self) -> bool:
        return self.error is None

    def pack(self) -> tuple[Any, Any, Any, str]:
        """What a Ray Core task sends back: the job it belongs to is known to the worker."""
        return (self.value, self.reference, self.error, self.node)

    @classmethod
    def unpack(cls, job: Job, packed: Sequence[Any]) -> Outcome:
        value, reference, error, node = packed
        return cls(
            execution_id=job.execution_id,
            attempt=job.attempt,
            value=value,
            reference=reference,
            error=error,
            node=node,
        )

    @classmethod
    def failure(cls, job: Job, exc: BaseException, *, lost: bool = False) -> Outcome:
        return cls(
            execution_id=job.execution_id,
            attempt=job.attempt,
            error=error_data(exc),
            lost=lost,
        )


def time_limit(options: dict[str, Any]) -> int | None:
    """An attempt's time limit: the task's ``timeout`` option (0: none), else
    ``DJANGO_RAY["TASK_TIMEOUT_SECONDS"]`` (None: none)."""
    if "timeout" in options:
        return int(options["timeout"]) or None
    from django_ray.conf import get_settings

    return get_settings().task_timeout_seconds


def timeout_error(job: Job) -> dict[str, Any]:
    """The error of an attempt stopped at its time limit: a ``TaskTimeout``."""
    from django_ray.exceptions import TaskTimeout

    return error_data(
        TaskTimeout,
        f"{job.task_path} ran past its time limit of {job.timeout} s "
        f"(attempt {job.attempt}) and was stopped on Ray",
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
