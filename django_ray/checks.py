"""The checks ``DJANGO_RAY`` values go through: each returns a problem sentence, or None.

A sentence leaves out the setting's name (:mod:`django_ray.conf` puts it first).
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Callable, Sequence
from typing import Any

from django_ray.addresses import address_kind

# A check returns a problem sentence (without the key's name) or None.
Check = Callable[[Any], str | None]


def integer_at_least(minimum: int, noun: str) -> Check:
    def check(value: Any) -> str | None:
        # bool is an int subclass, but True as a count is always a slip.
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None
        return f"must be a {noun} integer (>= {minimum}); got {value!r}."

    return check


def integer_between(minimum: int, maximum: int, noun: str) -> Check:
    at_least = integer_at_least(minimum, noun)

    def check(value: Any) -> str | None:
        if problem := at_least(value):
            return problem
        if value > maximum:
            return f"must be at most {maximum} (django-ray's maximum); got {value!r}."
        return None

    return check


def optional(check: Check) -> Check:
    def optional(value: Any) -> str | None:
        problem = None if value is None else check(value)
        return problem and problem.replace("; got", " or None; got", 1)

    return optional


def one_of(choices: Sequence[str]) -> Check:
    listed = ", ".join(f'"{choice}"' for choice in choices[:-1]) + f' or "{choices[-1]}"'

    def check(value: Any) -> str | None:
        if isinstance(value, str) and value in choices:
            return None
        return f"must be {listed}; got {value!r}."

    return check


def of_type(kinds: tuple[type, ...], expected: str) -> Check:
    def check(value: Any) -> str | None:
        return None if isinstance(value, kinds) else f"must be {expected}; got {value!r}."

    return check


def ray_address(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and address_kind(value) is not None):
        return None
    return (
        'must be None, "auto", "host:port", "ray://host:port", "http://host:port" or '
        f'"https://host:port" (port 1-65535); got {value!r}.'
    )


def denylist(value: Any) -> str | None:
    if isinstance(value, list | tuple) and all(isinstance(entry, str) for entry in value):
        return None
    return f"must be a list of exception class paths (str); got {value!r}."


def denylist_entry(entry: str) -> str | None:
    parts = entry.split(".")
    if len(parts) >= 2 and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        return None
    problem = f'must be a full dotted class path ("module.Class"); got {entry!r}'
    candidate = getattr(builtins, entry, None) if entry.isidentifier() else None
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return f'{problem}; did you mean "builtins.{entry}"?'
    return f"{problem}."
