"""Waking an idle worker as soon as a task is enqueued, instead of at its next poll.

On PostgreSQL, a trigger on the executions table (migration 0003) sends
``NOTIFY django_ray_ready`` for each statement that inserts READY rows, once per
queue among them, with the queue name as payload: ``enqueue()`` and
``enqueue_many()`` spend no round trip on it, and it is delivered only when
their transaction commits. An idle worker LISTENs on a connection of its own.
Elsewhere, and whenever the listening connection is unavailable, the worker
polls: the notification only shortens the wait, it is never needed for correctness.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import connections

logger = logging.getLogger("django_ray.worker")

CHANNEL = "django_ray_ready"
# How often a wait looks at the stop event while it listens.
SLICE_SECONDS = 0.25


class Wakeup:
    """An interruptible idle wait that ends early when a task of our queues is enqueued."""

    def __init__(self, queues: tuple[str, ...], using: str = "default") -> None:
        self.queues = set(queues)
        self.using = using
        self._listener: Any = None

    def wait(self, stop: threading.Event, timeout: float) -> None:
        listener = self._listen()
        if listener is None:
            stop.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        try:
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                for notice in listener.notifies(timeout=min(SLICE_SECONDS, left)):
                    if notice.payload in self.queues:
                        return
        except Exception as exc:  # a broken listener only costs us latency
            logger.warning("Lost the LISTEN connection (%s); polling instead", exc)
            self.close()

    def _listen(self) -> Any:
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return None
        if self._listener is None or self._listener.closed:
            try:
                import psycopg

                params = connection.get_connection_params()
                params.pop("cursor_factory", None)
                params.pop("context", None)
                self._listener = psycopg.connect(**params, autocommit=True)
                self._listener.execute(f"LISTEN {CHANNEL}")
            except Exception as exc:
                logger.warning("Cannot LISTEN for new tasks (%s); polling instead", exc)
                self._listener = None
        return self._listener

    def close(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None
