"""Waking an idle worker as soon as a task is enqueued, instead of at its next poll.

On PostgreSQL, ``enqueue()`` sends ``NOTIFY django_ray_ready`` in its own
transaction (delivered only if that transaction commits), and an idle worker
LISTENs on a connection of its own. Elsewhere, and whenever the listening
connection is unavailable, the worker polls: the notification only shortens
the wait, it is never needed for correctness.
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


def notify_ready(queue_name: str, using: str = "default") -> None:
    """Tell idle workers a task is ready (PostgreSQL only; sent when the transaction commits)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue_name])


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
