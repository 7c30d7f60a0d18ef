"""Turning a task path read from the database into a registered ``Task``, and nothing else."""

from __future__ import annotations

import re

from django.tasks import Task
from django.tasks.exceptions import InvalidTask
from django.utils.module_loading import import_string

_DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class UnregisteredTask(InvalidTask):
    """A stored task path that does not name a Django ``Task`` object."""


def resolve_task(task_path: str) -> Task:
    """Import ``task_path`` and return it only if it is a ``Task`` declared at that path.

    A path in a row is data: it must be a plain dotted path, and what it names
    must be a ``django.tasks.Task`` whose own ``module_path`` is that path, so
    a row naming ``os.system`` (or an alias of some other task) never runs.
    """
    if not isinstance(task_path, str) or not _DOTTED_PATH.match(task_path):
        raise UnregisteredTask(f"{task_path!r} is not a dotted path to a task.")
    try:
        candidate = import_string(task_path)
    except ImportError as exc:
        raise UnregisteredTask(f"Task {task_path} cannot be imported: {exc}") from exc
    except Exception as exc:  # the module raised while importing (a bad deploy, a setting)
        raise UnregisteredTask(
            f"Task {task_path} cannot be imported: its module raised "
            f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
        ) from exc
    if not isinstance(candidate, Task):
        kind = type(candidate)
        raise UnregisteredTask(
            f"{task_path} is a {kind.__module__}.{kind.__qualname__}, not a Django Task; "
            "only functions decorated with @task run on django-ray."
        )
    if candidate.module_path != task_path:
        raise UnregisteredTask(
            f"{task_path} refers to the task {candidate.module_path}; "
            "tasks run only under the path they were declared at."
        )
    return candidate
