"""The one shape of error data: what a row's ``errors`` hold, and what the retry policy reads.

An error is plain data: the exception's class path, the paths of its bases (so a
denylist matches by name, never by importing a class named in the database), a
message and a traceback. Pure: no ORM, no Ray.
"""

from __future__ import annotations

import traceback as traceback_module
from typing import Any


def class_path(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def error_data(
    error: BaseException | type[BaseException],
    message: str | None = None,
    *,
    traceback: str | None = None,
) -> dict[str, Any]:
    """``error`` (an exception, or an exception class with ``message``) as error data.

    For an exception the message and traceback default to its own; for a class,
    to ``message`` and no traceback.
    """
    kind = error if isinstance(error, type) else type(error)
    if message is None:
        message = "" if isinstance(error, type) else str(error)
    if traceback is None:
        traceback = (
            "" if isinstance(error, type) else "".join(traceback_module.format_exception(error))
        )
    return {
        "exception_class_path": class_path(kind),
        "exception_bases": [class_path(base) for base in kind.__mro__[1:] if base is not object],
        "message": message,
        "traceback": traceback,
    }


def headline(error: dict[str, Any]) -> str:
    """The first line of an error's message (Ray's messages run on for lines)."""
    return (str(error.get("message") or "").strip().splitlines() or [""])[0]
