"""The status report as plain-text tables for a terminal (``django_ray_status``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django_ray.operations.status import ACTIVE_STATES, Status
from django_ray.states import Origin


def render_status(status: Status) -> str:
    """The report as plain-text tables for a terminal."""
    states = list(ACTIVE_STATES)
    lines = [f"django-ray status at {status.checked_at.isoformat(timespec='seconds')}", ""]
    lines += _table(
        ["QUEUE", *states, "OLDEST READY"],
        [
            [
                queue.queue,
                *(queue.counts[state] for state in states),
                _seconds(queue.oldest_ready_age_seconds),
            ]
            for queue in status.queues
        ],
    ) or ["No tasks."]
    if status.celery_queues:
        lines += [
            "",
            *_table(
                ["CELERY QUEUE", *states],
                [
                    [queue.queue, *(queue.counts[state] for state in states)]
                    for queue in status.celery_queues
                ],
            ),
        ]
    lines += ["", f"Workers: {status.workers_alive} alive, {status.workers_expired} expired."]
    lines += _table(
        ["WORKER", "LEASE", "HOST", "PID", "RUNNER", "IN FLIGHT", "LAST HEARTBEAT"],
        [
            [
                worker.worker_id,
                worker.lease + (" (stopping)" if worker.stopping else ""),
                worker.hostname or "-",
                worker.pid or "-",
                "celery pool" if worker.origin == Origin.CELERY else worker.runner or "-",
                worker.in_flight
                if worker.concurrency is None
                else f"{worker.in_flight}/{worker.concurrency}",
                _ago(status.checked_at, worker.heartbeat_at),
            ]
            for worker in status.workers
        ],
    )
    lines += ["", f"Stuck tasks: {status.stuck_count}."]
    lines += _table(
        ["ID", "TASK", "QUEUE", "WORKER", "ATTEMPT", "MONITOR HEARTBEAT"],
        [
            [
                task.id,
                task.task_path,
                task.queue,
                task.worker or "-",
                task.attempt,
                _ago(status.checked_at, task.monitor_heartbeat_at),
            ]
            for task in status.stuck
        ],
    )
    if status.stuck_count > len(status.stuck):
        lines.append(f"... and {status.stuck_count - len(status.stuck)} more.")
    if status.nodes:
        lines += ["", "Ray nodes of the latest tasks' last attempts:"]
        lines += _table(
            ["RAY NODE", "SUCCEEDED", "FAILED"],
            [[node.node, node.succeeded, node.failed] for node in status.nodes],
        )
    if status.waiting_count:
        lines += ["", f"Waiting on Ray for resources: {status.waiting_count}."]
        lines += _table(
            ["ID", "TASK", "WORKER", "RAY STATUS", "ASKS FOR"],
            [
                [task.id, task.task_path, task.worker, task.ray_status, _asks(task.options)]
                for task in status.waiting
            ],
        )
    if status.schedules:
        lines += ["", *_schedules(status)]
    attention = status.attention
    lines += ["", "Needs attention:" if attention else "Nothing needs attention."]
    lines += [f"  - {sentence}." for sentence in attention]
    return "\n".join(lines)


def _schedules(status: Status) -> list[str]:
    return _table(
        ["SCHEDULE", "TASK", "WHEN", "LAST RUN", "NEXT RUN", "RUNS"],
        [
            [
                entry.name,
                entry.task,
                entry.when,
                _moment(entry.last_run_at),
                _moment(entry.next_run_at),
                entry.runs,
            ]
            for entry in status.schedules
        ],
    )


def _asks(options: dict[str, Any]) -> str:
    asked = {name: options[name] for name in ("num_cpus", "num_gpus", "memory") if name in options}
    asked |= dict(options.get("resources") or {})
    return ", ".join(f"{name}={amount}" for name, amount in asked.items()) or "-"


def _moment(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return []
    cells = [headers, *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _seconds(seconds: int | None) -> str:
    return "-" if seconds is None else f"{seconds} s"


def _ago(now: datetime, moment: datetime | None) -> str:
    return "never" if moment is None else f"{int((now - moment).total_seconds())} s ago"
