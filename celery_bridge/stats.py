"""What the pool tells ``inspect stats``, and the facts it is built from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from celery_bridge.runs import Runs


def pool_info(runs: Runs | None, limit: int) -> dict[str, Any]:
    """The pool's part of ``inspect stats`` (before it starts: the limit alone)."""
    jobs = runs.jobs if runs is not None else []
    actors = runs.calls.actors if runs is not None else None
    return {
        "max-concurrency": limit,
        # The warm actors' Ray worker processes: one per slot once all started.
        "processes": actors.pids() if actors is not None else [],
        "in-flight": len(jobs),
        "ray-address": ray_address() if runs is not None else None,
        "ray-tasks": sorted(job.handle for job in jobs if job.handle),
    }


def queues_of(app: Celery) -> list[str]:
    """The queues this worker consumes from (``-Q``, or the app's defaults)."""
    try:
        return sorted(app.amqp.queues.consume_from or app.amqp.queues)
    except Exception:  # a lease without queue names still says the worker is alive
        return []


def ray_address() -> str:
    """The cluster this process is connected to (its GCS address)."""
    import ray

    return str(ray.get_runtime_context().gcs_address)
