"""A return value to ``result_data`` or ``result_reference`` and back.

:func:`encode_result` runs where the value is produced (inside the Ray worker), so
a large payload travels once, straight to storage; :func:`load_result` runs
wherever the result is read and gives back the exact value or raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django_ray.payloads import PayloadError
from django_ray.results.errors import ResultCorrupted, ResultStorageError, ResultUnavailable
from django_ray.results.storage import Pointer, storage_for

if TYPE_CHECKING:
    from django_ray.conf import RaySettings


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResult:
    """One attempt's return value as recorded: ``inline`` JSON, or a ``reference`` to storage.

    ``reference`` is None exactly when the value is inline (``inline`` may itself be None).
    """

    inline: Any = None
    reference: dict[str, Any] | None = None

    @property
    def is_inline(self) -> bool:
        return self.reference is None


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON: the bytes whose length is compared with ``MAX_RESULT_SIZE_BYTES``."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_result(
    value: Any, *, execution_id: str, attempt: int, settings: RaySettings
) -> StoredResult:
    """Keep ``value`` (already JSON-ready) inline if small enough, else store it and point to it.

    Raises :class:`~django_ray.results.errors.ResultWriteFailed` when storing fails:
    that attempt failed, and a result is never silently kept as a digest instead.
    """
    try:
        data = encode_json(value)
    except UnicodeEncodeError as exc:
        raise PayloadError(
            f"Result of execution {execution_id} cannot be stored as UTF-8 JSON: {exc}."
        ) from exc
    if len(data) <= settings.max_result_size_bytes:
        return StoredResult(inline=value)
    pointer = storage_for(settings).store(data, execution_id=execution_id, attempt=attempt)
    return StoredResult(reference=pointer.as_json())


def load_result(reference: Any, *, execution_id: str, settings: RaySettings) -> Any:
    """The value behind ``reference`` (a ``result_reference``), verified by size and sha256.

    The backend named in the pointer is used, configured by ``settings``.
    Raises :class:`~django_ray.results.errors.ResultUnavailable` (a subclass per
    cause) naming the execution and the location; never returns a wrong value.
    """
    pointer = Pointer.parse(reference, execution_id=execution_id)
    try:
        storage = storage_for(settings, pointer.backend)
    except ResultStorageError as exc:
        raise ResultUnavailable(
            f"Result of execution {execution_id} at {pointer.location} is unavailable here: {exc}"
        ) from exc
    data = storage.load(pointer, execution_id=execution_id)
    try:
        return json.loads(data)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ResultCorrupted(
            f"Result of execution {execution_id} at {pointer.location} is corrupted: "
            f"it is not UTF-8 JSON ({exc})."
        ) from exc


def delete_result(reference: Any, *, execution_id: str, settings: RaySettings) -> bool:
    """Remove the payload behind ``reference``; True if it named a stored payload.

    A payload already gone is not an error, so a purge can be run again.
    """
    pointer = Pointer.parse(reference, execution_id=execution_id)
    storage_for(settings, pointer.backend).delete(pointer, execution_id=execution_id)
    return pointer.backend != "digest"
