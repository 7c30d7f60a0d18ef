"""Connecting the Celery worker process to Ray without Ray taking the process over."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django_ray.runtime import connection


def connect_keeping_worker_process(address: str | None, runtime_env: Mapping[str, Any]) -> None:
    """``connection.connect``, with the worker's streams and signal handlers kept."""
    with _worker_process_kept():
        connection.connect(address, runtime_env)


@contextmanager
def _worker_process_kept() -> Iterator[None]:
    """Connect to Ray without taking over the worker's output and signal handlers.

    ``ray.init`` enables ``faulthandler`` on ``sys.stderr``, which needs a file
    descriptor (a worker that redirects its output has a logging proxy there), and
    replaces the SIGTERM handler with one that exits, which would turn Celery's
    warm shutdown into an abrupt one.
    """
    saved_streams = sys.stdout, sys.stderr
    in_main_thread = threading.current_thread() is threading.main_thread()
    saved_handlers = {sig: signal.getsignal(sig) for sig in _KEPT_SIGNALS}
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved_streams
        for sig, handler in saved_handlers.items():
            if in_main_thread and handler is not None and signal.getsignal(sig) != handler:
                signal.signal(sig, handler)


_KEPT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1)
