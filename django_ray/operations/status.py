"""The fleet at a glance: queue depths, worker liveness, work in flight and stuck tasks.

Every query is an aggregate (GROUP BY) or a bounded list, so the report costs
about the same with a hundred rows as with millions of finished ones: only
READY and RUNNING rows are read, through their partial indexes, and lists are
capped. Counting finished rows would read the whole history, so depths are
given for the two states that are work still to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Min, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from django_ray.conf import get_settings
from django_ray.models import Origin, State, TaskExecution, WorkerLease
from django_ray.operations import count_tasks
from django_ray.scheduling.status import ScheduleStatus, schedule_statuses

ACTIVE_STATES = (State.READY.value, State.RUNNING.value)
"""The states a queue's depth is counted in."""
STUCK_TASKS_SHOWN = 20
"""At most this many stuck (or waiting) tasks are listed; the count covers all of them."""
RECENT_TASKS = 1000
"""The Ray nodes section counts the last attempts of this many most recently enqueued tasks."""
WAITING_STATUSES = ("PENDING", "WAITING_FOR_NODE")
"""What Ray says of an attempt it holds for resources (``ray_status``)."""


@dataclass(frozen=True, slots=True)
class QueueStatus:
    queue: str
    counts: dict[str, int]
    """Rows per state of :data:`ACTIVE_STATES`, every one present."""
    oldest_ready_age_seconds: int | None
    """How long the longest-waiting due READY row has been claimable (whole seconds)."""


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    worker_id: str
    lease: str
    """``alive``, ``expired``, or ``missing`` (RUNNING rows name a worker with no lease row)."""
    in_flight: int
    origin: str = ""
    """``tasks`` (a Django worker), ``celery`` (a Celery worker with the django_ray pool)."""
    hostname: str = ""
    pid: int | None = None
    runner: str = ""
    concurrency: int | None = None
    heartbeat_at: datetime | None = None
    stopping: bool = False


@dataclass(frozen=True, slots=True)
class StuckTask:
    id: str
    task_path: str
    queue: str
    worker: str
    attempt: int
    monitor_heartbeat_at: datetime | None


@dataclass(frozen=True, slots=True)
class WaitingTask:
    """A RUNNING attempt that Ray holds until resources free up or a node joins."""

    id: str
    task_path: str
    worker: str
    ray_status: str
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """Where the last attempts of recent tasks ran, and how they ended there."""

    node: str
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class Status:
    checked_at: datetime
    stuck_task_timeout_seconds: int
    queues: tuple[QueueStatus, ...]
    """Queues of Django Tasks rows, the ones Django workers claim."""
    celery_queues: tuple[QueueStatus, ...]
    """Queues of the Celery pool's rows (READY: a retry pending), which Celery owns."""
    workers_alive: int
    workers_expired: int
    workers: tuple[WorkerStatus, ...]
    """Workers with a live lease, and any other worker that RUNNING rows still name."""
    stuck_count: int
    stuck: tuple[StuckTask, ...]
    """The first :data:`STUCK_TASKS_SHOWN` stuck tasks, longest silent first."""
    schedules: tuple[ScheduleStatus, ...] = ()
    """Every entry of ``DJANGO_RAY["SCHEDULE"]``, with its last and next run."""
    lease_seconds: int = 60
    waiting_count: int = 0
    waiting: tuple[WaitingTask, ...] = ()
    """The first :data:`STUCK_TASKS_SHOWN` attempts Ray holds for resources."""
    nodes: tuple[NodeStatus, ...] = ()
    """By Ray node: the last attempts of the :data:`RECENT_TASKS` latest tasks."""

    @property
    def attention(self) -> list[str]:
        """One sentence per thing an operator should look at; empty when all is well."""
        found = [
            f"worker {worker.worker_id} holds {count_tasks(worker.in_flight)} RUNNING "
            f"but its lease is {worker.lease}"
            for worker in self.workers
            if worker.lease != "alive" and worker.in_flight
        ]
        if no_node := sum(task.ray_status == "WAITING_FOR_NODE" for task in self.waiting):
            found.append(
                f"{count_tasks(no_node)} WAITING_FOR_NODE: no live Ray node has the "
                "resources asked for; each runs once a node with them joins"
            )
        if self.stuck_count:
            found.append(
                f"{count_tasks(self.stuck_count)} stuck: RUNNING with no live worker lease and "
                f"no monitor heartbeat for {self.stuck_task_timeout_seconds} s"
            )
        found += [
            f"schedule {entry.name} has a run due since {entry.next_run_at:%Y-%m-%d %H:%M:%S%z} "
            "not enqueued: is a worker running with --schedule?"
            for entry in self.schedules
            if entry.overdue(self.checked_at, self.lease_seconds)
        ]
        return found

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (timestamps as ISO 8601 strings)."""
        return {
            "checked_at": self.checked_at.isoformat(),
            "queues": {
                queue.queue: {
                    **queue.counts,
                    "oldest_ready_age_seconds": queue.oldest_ready_age_seconds,
                }
                for queue in self.queues
            },
            "celery_queues": {queue.queue: {**queue.counts} for queue in self.celery_queues},
            "workers": {"alive": self.workers_alive, "expired": self.workers_expired},
            "in_flight": [_jsonable(worker) for worker in self.workers],
            "stuck_tasks": {
                "count": self.stuck_count,
                "timeout_seconds": self.stuck_task_timeout_seconds,
                "shown": [_jsonable(task) for task in self.stuck],
            },
            "schedules": [_jsonable(entry) for entry in self.schedules],
            "ray_nodes": [_jsonable(node) for node in self.nodes],
            "waiting_on_ray": {
                "count": self.waiting_count,
                "shown": [_jsonable(task) for task in self.waiting],
            },
            "attention": self.attention,
        }


def collect_status(now: datetime | None = None) -> Status:
    """Read the report from the database: eleven queries, none of them proportional to
    history."""
    now = now or timezone.now()
    settings = get_settings()
    timeout = settings.stuck_task_timeout_seconds
    stuck = stuck_tasks(now, timeout)
    workers_alive, workers_expired = _lease_counts(now)
    queues, celery_queues = _queues(now)
    waiting = TaskExecution.objects.running().filter(ray_status__in=WAITING_STATUSES)
    return Status(
        checked_at=now,
        stuck_task_timeout_seconds=timeout,
        queues=queues,
        celery_queues=celery_queues,
        workers_alive=workers_alive,
        workers_expired=workers_expired,
        workers=_workers(now),
        stuck_count=stuck.count(),
        stuck=tuple(
            StuckTask(
                id=str(row.pk),
                task_path=row.task_path,
                queue=row.queue_name,
                worker=row.worker,
                attempt=row.attempt,
                monitor_heartbeat_at=row.monitor_heartbeat_at,
            )
            for row in stuck[:STUCK_TASKS_SHOWN]
        ),
        schedules=schedule_statuses(),
        lease_seconds=settings.worker_lease_seconds,
        waiting_count=waiting.count(),
        waiting=tuple(
            WaitingTask(str(row.pk), row.task_path, row.worker, row.ray_status, row.options)
            for row in waiting.order_by("started_at", "id")[:STUCK_TASKS_SHOWN]
        ),
        nodes=_recent_nodes(),
    )


def _recent_nodes() -> tuple[NodeStatus, ...]:
    """One bounded read through the enqueue-time index: the last :data:`RECENT_TASKS`."""
    recent = TaskExecution.objects.order_by("-enqueued_at").values_list("ray_node", "state")
    counts: dict[str, list[int]] = {}
    for node, state in recent[:RECENT_TASKS]:
        if node and state in (State.SUCCESSFUL, State.FAILED):
            counts.setdefault(node, [0, 0])[state == State.FAILED] += 1
    return tuple(NodeStatus(node, *counts[node]) for node in sorted(counts))


def stuck_tasks(now: datetime, timeout_seconds: int) -> QuerySet[TaskExecution]:
    """RUNNING rows with no live worker lease whose monitor has been silent past the timeout."""
    silent_since = now - timedelta(seconds=timeout_seconds)
    return (
        TaskExecution.objects.running()
        .filter(Q(monitor_heartbeat_at__isnull=True) | Q(monitor_heartbeat_at__lt=silent_since))
        .exclude(worker__in=WorkerLease.objects.alive(now).values("worker_id"))
        .order_by(F("monitor_heartbeat_at").asc(nulls_first=True), "id")
    )


def _queues(now: datetime) -> tuple[tuple[QueueStatus, ...], tuple[QueueStatus, ...]]:
    """Django Tasks queues, then the Celery pool's."""
    depths: dict[str, dict[str, int]] = {}
    celery: dict[str, dict[str, int]] = {}
    rows = (
        # OR, not IN: PostgreSQL matches each term to its state's partial index.
        TaskExecution.objects.filter(Q(state=State.READY) | Q(state=State.RUNNING))
        .order_by("origin", "queue_name", "state")
        .values_list("origin", "queue_name", "state")
        .annotate(count=Count("pk"))
    )
    for origin, queue, state, count in rows:
        by_queue = celery if origin == Origin.CELERY else depths
        by_queue.setdefault(queue, dict.fromkeys(ACTIVE_STATES, 0))[state] = count
    # A deferred or backed-off row starts waiting when it becomes due, not when enqueued.
    waiting_since = Coalesce(Greatest("run_after", "enqueued_at"), "enqueued_at")
    oldest = dict(
        TaskExecution.objects.ready()
        .of_tasks()
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .order_by("queue_name")
        .values_list("queue_name")
        .annotate(since=Min(waiting_since))
    )
    tasks = tuple(
        QueueStatus(
            queue=queue,
            counts=counts,
            oldest_ready_age_seconds=(
                int((now - oldest[queue]).total_seconds()) if queue in oldest else None
            ),
        )
        for queue, counts in sorted(depths.items())
    )
    celery_queues = tuple(
        QueueStatus(queue, counts, None) for queue, counts in sorted(celery.items())
    )
    return tasks, celery_queues


def _lease_counts(now: datetime) -> tuple[int, int]:
    counts = WorkerLease.objects.aggregate(
        alive=Count("pk", filter=Q(lease_expires_at__gt=now)),
        expired=Count("pk", filter=Q(lease_expires_at__lte=now)),
    )
    return counts["alive"], counts["expired"]


def _workers(now: datetime) -> tuple[WorkerStatus, ...]:
    holding = dict(
        TaskExecution.objects.running()
        .order_by("worker")
        .values_list("worker")
        .annotate(count=Count("pk"))
    )
    leases = WorkerLease.objects.filter(
        Q(lease_expires_at__gt=now) | Q(worker_id__in=list(holding))
    ).order_by("worker_id")
    workers = {
        lease.worker_id: WorkerStatus(
            worker_id=lease.worker_id,
            lease="alive" if lease.lease_expires_at > now else "expired",
            in_flight=holding.get(lease.worker_id, 0),
            origin=lease.origin,
            hostname=lease.hostname,
            pid=lease.pid,
            runner=lease.runner,
            concurrency=lease.concurrency,
            heartbeat_at=lease.heartbeat_at,
            stopping=lease.stopping,
        )
        for lease in leases
    }
    for worker_id, count in holding.items():
        workers.setdefault(worker_id, WorkerStatus(worker_id, "missing", count))
    return tuple(workers[worker_id] for worker_id in sorted(workers))


def _jsonable(report: Any) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in asdict(report).items()
    }
