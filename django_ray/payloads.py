"""What may travel as task arguments and return values: JSON, checked before anything is written."""

from __future__ import annotations

import math
from typing import Any

ALLOWED = "dict with str keys, list, tuple, str, int, float, bool or None"


class PayloadError(TypeError):
    """A task argument or return value that cannot be stored as JSON."""


def to_json(value: Any, *, task_path: str, where: str) -> Any:
    """Return ``value`` as plain JSON types (tuples become lists) or raise PayloadError.

    The error names the task, where in the payload the bad value sits, and its
    type, so the caller can fix the call instead of guessing.
    """
    return _convert(value, task_path, where)


# Where a value sits: the payload's name, then (parent, index or key) pairs, spelled out
# only for an error (formatting it for every value would cost more than checking them).
_Where = str | tuple["_Where", Any]


def _spelled(where: _Where) -> str:
    if isinstance(where, str):
        return where
    parent, step = where
    return f"{_spelled(parent)}[{step!r}]"


def _convert(value: Any, task_path: str, where: _Where) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise PayloadError(
            f"Task {task_path}: {_spelled(where)} is {value!r}, which JSON cannot represent; "
            "use a finite float or None."
        )
    if isinstance(value, (list, tuple)):
        return [_convert(item, task_path, (where, i)) for i, item in enumerate(value)]
    if isinstance(value, dict):
        converted = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(
                    f"Task {task_path}: {_spelled(where)} has a key of type {_type_name(key)} "
                    f"({key!r}); JSON object keys must be str."
                )
            converted[key] = _convert(item, task_path, (where, key))
        return converted
    raise PayloadError(
        f"Task {task_path}: {_spelled(where)} is of type {_type_name(value)}, which is not "
        f"JSON-serializable; use {ALLOWED}."
    )


def _type_name(value: Any) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
