"""What a row may run is what ``enqueue()`` wrote: its task, options and arguments, signed.

``enqueue()`` signs the row with Django's signing (``SECRET_KEY``); a worker
checks the signature before it imports anything the row names or hands it to
Ray, accepting any key of ``SECRET_KEY_FALLBACKS`` too, so keys can be rotated
while rows wait. A row written any other way (or tampered with in the table)
is failed with :class:`~django_ray.exceptions.InvalidSignature`, and nothing it
names is imported.

The signature covers the row's id (so it cannot be copied to another row), its
task path, whether it takes the context, its options (Ray resources,
runtime_env, retry overrides) and its arguments, as canonical JSON.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.core import signing

from django_ray.exceptions import InvalidSignature

if TYPE_CHECKING:
    from django_ray.models import TaskExecution

SALT = "django_ray.execution"


def _signed_text(row: TaskExecution) -> str:
    fields = [str(row.pk), row.task_path, row.takes_context, row.options, row.args, row.kwargs]
    return json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _canonical(value: Any) -> Any:
    """``value`` as the database gives it back: PostgreSQL's jsonb keeps numbers as decimals,
    so ``1e16`` (a float) returns as ``10000000000000000`` (an int). Integral floats are
    signed as ints, so both read the same."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    return value


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def sign(row: TaskExecution) -> str:
    """The signature of what ``row`` would run, with ``SECRET_KEY``."""
    return _signer().signature(_signed_text(row))


def verify(row: TaskExecution) -> None:
    """Raise :class:`InvalidSignature` unless ``row`` carries a signature of what it would run,
    made with ``SECRET_KEY`` or a key of ``SECRET_KEY_FALLBACKS``."""
    if not row.signature:
        raise InvalidSignature(
            f"Execution {row.pk} ({row.task_path!r}) carries no signature: it was not "
            "written by enqueue(); nothing it names was imported or run."
        )
    signer = _signer()
    try:
        signer.unsign(f"{_signed_text(row)}{signer.sep}{row.signature}")
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise InvalidSignature(
            f"Execution {row.pk} ({row.task_path!r}) does not match its signature: its task, "
            "options or arguments were changed after enqueue(), or it was signed with a key "
            "that is neither SECRET_KEY nor in SECRET_KEY_FALLBACKS. Nothing it names was "
            "imported or run."
        ) from exc
