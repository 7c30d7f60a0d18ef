"""A LISTEN connection for tests: which wake-ups PostgreSQL delivered, in order, exactly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection

from django_ray.worker.wakeup import CHANNEL

# Sent last by the listener itself: everything committed before it has arrived when it does.
END = "end-of-test"


class Listener:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def heard(self) -> list[str]:
        """The payloads delivered on the channel since the last call, in commit order."""
        self._conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, END])
        payloads = []
        for notice in self._conn.notifies(timeout=10):
            if notice.payload == END:
                return payloads
            payloads.append(notice.payload)
        raise AssertionError(f"{END!r} did not arrive within 10 s; heard {payloads}")


@contextmanager
def listening() -> Iterator[Listener]:
    """LISTEN on the wake-up channel from a connection of its own, in autocommit."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield Listener(conn)
