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

import functools
import json
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import signing
from django.utils.crypto import salted_hmac

from django_ray.exceptions import InvalidSignature

if TYPE_CHECKING:
    from django_ray.models import TaskExecution

SALT = "django_ray.execution"
# Canonical JSON: sorted keys, no spaces, no NaN. Made once: making one costs as much as using it.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def _signed_text(row: TaskExecution) -> str:
    fields = [str(row.pk), row.task_path, row.takes_context, row.options, row.args, row.kwargs]
    return _CANONICAL_JSON.encode(_canonical(fields))


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
    # Made once per set of keys (a Signer costs more to make than a signature), and made
    # again as soon as the keys change, as they do under override_settings.
    return _signer_for(settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))


@functools.lru_cache(maxsize=4)
def _signer_for(key: str, fallback_keys: tuple[str, ...]) -> signing.Signer:
    return signing.Signer(key=key, fallback_keys=list(fallback_keys), salt=SALT)


def sign(row: TaskExecution) -> str:
    """The signature of what ``row`` would run, with ``SECRET_KEY``."""
    return _signer().signature(_signed_text(row))


def sign_all(rows: list[TaskExecution]) -> None:
    """Set each row's signature, as :func:`sign` makes it, for rows of one task (the same
    task path, context flag and options): what they share is encoded and keyed once."""
    if len(rows) < 2:
        for row in rows:
            row.signature = sign(row)
        return
    first, signer = rows[0], _signer()
    # The text _signed_text() makes, in three parts: the id, what the rows share, and the
    # arguments (each part a JSON list without its brackets).
    shared = _CANONICAL_JSON.encode(
        _canonical([first.task_path, first.takes_context, first.options])
    )
    # Signer.signature(text) is the URL-safe base64 of salted_hmac(salt + "signer", text).
    keyed = salted_hmac(SALT + "signer", b"", signer.key, algorithm=signer.algorithm)
    for row in rows:
        arguments = _CANONICAL_JSON.encode(_canonical([row.args, row.kwargs]))
        mac = keyed.copy()
        mac.update(f'["{row.pk}",{shared[1:-1]},{arguments[1:]}'.encode())
        row.signature = signing.b64_encode(mac.digest()).decode()
    if first.signature != sign(first):  # should Django sign otherwise one day
        for row in rows:
            row.signature = sign(row)


VERIFIED = "_django_ray_verified"  # on a row object: the signature it was verified with


def verify(row: TaskExecution) -> None:
    """Raise :class:`InvalidSignature` unless ``row`` carries a signature of what it would run,
    made with ``SECRET_KEY`` or a key of ``SECRET_KEY_FALLBACKS``.

    A row object verified once is not checked again while it keeps that signature (the
    worker checks each row when it claims it, and again before each signal it sends).
    """
    if row.signature and row.__dict__.get(VERIFIED) == (row.signature, _signer()):
        return
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
    row.__dict__[VERIFIED] = (row.signature, signer)
