"""Log records of a task on Ray, sent home to the Celery worker's own handlers.

Under prefork a child process writes to the handlers it inherited; a Ray worker
has none of the Celery worker's. So, while a task runs on Ray, the records that
reach its root logger (the tracer's ``Task ... succeeded``, the task's own
loggers) are kept, with the task's id and name, and travel back with the
outcome; the pool hands each to the logger of the same name in the worker,
which applies its own level and handlers. Outside a task, records go to the
handlers the Ray worker's logging set-up installed (Ray's log files).
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

# The LogRecord attributes that travel (plain values only).
_KEPT = (
    "name", "levelno", "levelname", "pathname", "filename", "module", "lineno", "funcName",
    "created", "msecs", "relativeCreated", "thread", "threadName", "process", "processName",
    "task_id", "task_name",
)  # fmt: skip


_kept = threading.local()  # the records of the task running in this thread


class SendHome(logging.Handler):
    """A logger's one handler in a Ray worker: keeps records while a task runs, and passes
    the others to the handlers it replaced."""

    def __init__(self, local: Iterable[logging.Handler]) -> None:
        super().__init__()
        self.local = list(local)

    def emit(self, record: logging.LogRecord) -> None:
        kept: list[dict[str, Any]] | None = getattr(_kept, "records", None)
        if kept is None:
            for handler in self.local:
                if record.levelno >= handler.level:
                    handler.handle(record)
            return
        kept.append(_plain(record))


@contextmanager
def keeping() -> Iterator[list[dict[str, Any]]]:
    """The records logged in this thread meanwhile (a task's run)."""
    records: list[dict[str, Any]] = []
    _kept.records = records
    try:
        yield records
    finally:
        _kept.records = None


_installed: SendHome | None = None


# Loggers Celery's logging set-up gives handlers of their own (task loggers do not
# propagate to the root logger).
_CELERY_LOGGERS = ("celery.task", "celery.redirected")


def install(level: int) -> SendHome:
    """Make this Ray worker send task records home, from ``level`` up: through the root
    logger, and through Celery's task logger, which does not propagate to it."""
    global _installed
    root = logging.getLogger()
    if _installed is None:
        _installed = SendHome(root.handlers)
        root.handlers = [_installed]
        for name in _CELERY_LOGGERS:
            logger = logging.getLogger(name)
            if logger.handlers:
                logger.handlers = [SendHome(logger.handlers)]
    root.setLevel(level)
    return _installed


def _travels(value: Any) -> bool:
    """Whether an extra field can go back with the outcome (it is pickled)."""
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def replay(records: Iterable[dict[str, Any]]) -> None:
    """In the worker: hand each record to its logger, as if it had been logged here."""
    for fields in records:
        logger = logging.getLogger(fields["name"])
        if logger.isEnabledFor(fields["levelno"]):
            logger.handle(logging.makeLogRecord(fields))


# What every LogRecord has; anything else came with ``extra=`` (Celery's tracer passes
# ``data``, log formats and filters read such fields).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def _plain(record: logging.LogRecord) -> dict[str, Any]:
    from celery._state import get_current_task

    fields = {name: getattr(record, name) for name in _KEPT if hasattr(record, name)}
    fields |= {
        name: value
        for name, value in vars(record).items()
        if name not in _STANDARD and name not in fields and _travels(value)
    }
    if _travels((record.msg, record.args)):  # the format and its arguments, as logged
        fields["msg"], fields["args"] = record.msg, record.args
    else:
        fields["msg"], fields["args"] = record.getMessage(), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    fields["exc_text"] = record.exc_text
    fields["stack_info"] = record.stack_info
    task = get_current_task()
    if task is not None and "task_id" not in fields:
        fields["task_id"] = task.request.id
        fields["task_name"] = task.name
    return fields
