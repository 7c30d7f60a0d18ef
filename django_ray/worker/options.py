"""What a worker is told to do (``WorkerOptions``), and what one pass of it did (``Tick``)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    queues: tuple[str, ...]
    concurrency: int
    heartbeat_seconds: float
    lease_seconds: float
    backend: str = "default"
    ray_address: str | None = None
    burst: bool = False
    # How long an idle worker sleeps between claim attempts, and how long a
    # busy one waits on Ray for the next completion before claiming again.
    idle_wait_seconds: float = 1.0
    busy_wait_seconds: float = 0.1
    # After a stop request, how long in-flight Ray Core attempts may finish
    # before they are handed back to the queue.
    grace_seconds: float = 30.0
    # How often the worker logs its one-line summary at INFO (0: never).
    summary_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Tick:
    recorded: int
    claimed: int


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
