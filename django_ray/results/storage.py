"""Where results too large for ``result_data`` go: one base class owning the API, one subclass each.

A subclass says where a key lives (:meth:`ResultStorage.location_of`) and how to
write, read and delete bytes there. The base derives keys, builds and checks
pointers, verifies size and sha256, and words every error, so every backend
behaves the same.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from django_ray.results.errors import (
    ResultCorrupted,
    ResultDigestOnly,
    ResultMissing,
    ResultStorageError,
    ResultUnavailable,
    ResultWriteFailed,
    UnsafeResultReference,
)
from django_ray.results.libraries import missing_library_problem

if TYPE_CHECKING:
    from django_ray.conf import RaySettings

CONTENT_TYPE = "application/json"
BACKENDS = ("digest", "filesystem", "s3", "gcs")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The attempt number ends every location: ".../<execution id>/<attempt>.json".
_ATTEMPT_TAIL = re.compile(r"[/\\](?P<attempt>[1-9][0-9]{0,9})\.json\Z")


def result_key(execution_id: str, attempt: int) -> str:
    """``<execution id>/<attempt>.json``: the only input to any location, never user data."""
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"An attempt must be a positive integer; got {attempt!r}.")
    return f"{_canonical(execution_id)}/{attempt}.json"


def _canonical(execution_id: str) -> str:
    try:
        return str(uuid.UUID(execution_id))
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"An execution id must be a UUID; got {execution_id!r}.") from None


def object_name(prefix: str, key: str) -> str:
    """``key`` under an object store ``prefix``; slashes around the prefix do not matter."""
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix else key


@dataclass(frozen=True, slots=True, kw_only=True)
class Pointer:
    """A checked ``TaskExecution.result_reference``; :meth:`as_json` is what the column holds."""

    backend: str
    location: str
    size: int
    sha256: str
    content_type: str = CONTENT_TYPE

    @classmethod
    def describing(cls, backend: str, location: str, data: bytes) -> Pointer:
        return cls(
            backend=backend,
            location=location,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    @classmethod
    def parse(cls, reference: Any, *, execution_id: str) -> Pointer:
        """The pointer in ``reference``; :class:`UnsafeResultReference` if it is malformed."""
        if problem := _pointer_problem(reference):
            raise UnsafeResultReference(
                f"Result reference of execution {execution_id} is malformed: {problem}."
            )
        return cls(**reference)

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "location": self.location,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }


def _pointer_problem(reference: Any) -> str | None:
    if not isinstance(reference, dict):
        return f"expected a dict; got {reference!r}"
    expected = {"backend", "location", "size", "sha256", "content_type"}
    if set(reference) != expected:
        return f"expected the keys {sorted(expected)}; got {sorted(map(str, reference))}"
    size = reference["size"]
    checks = {
        "backend": reference["backend"] in BACKENDS,
        "location": isinstance(reference["location"], str),
        "size": isinstance(size, int) and not isinstance(size, bool) and size >= 0,
        "sha256": isinstance(reference["sha256"], str) and _SHA256.fullmatch(reference["sha256"]),
        "content_type": reference["content_type"] == CONTENT_TYPE,
    }
    for key, valid in checks.items():
        if not valid:
            return f'"{key}" is not valid; got {reference[key]!r}'
    return None


class ResultStorage(ABC):
    """Stores, loads and deletes result payloads under keys derived from the execution id."""

    backend: ClassVar[str]

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings

    @abstractmethod
    def location_of(self, key: str) -> str:
        """Where ``key`` lives in the configured root, bucket and prefix."""

    @abstractmethod
    def _write(self, location: str, data: bytes) -> None:
        """Store ``data`` at ``location``, replacing what is there; raise on any failure."""

    @abstractmethod
    def _read(self, location: str) -> bytes | None:
        """The bytes at ``location``, or None when nothing is stored there."""

    @abstractmethod
    def _delete(self, location: str) -> None:
        """Remove what is at ``location``; nothing stored there is not an error."""

    def store(self, data: bytes, *, execution_id: str, attempt: int) -> Pointer:
        """Write ``data`` for this attempt and return its pointer; :class:`ResultWriteFailed`."""
        location = self.location_of(result_key(execution_id, attempt))
        try:
            self._write(location, data)
        except Exception as exc:
            raise ResultWriteFailed(
                f"Result of execution {execution_id} attempt {attempt} could not be written "
                f"to {location}: {type(exc).__name__}: {exc}"
            ) from exc
        return Pointer.describing(self.backend, location, data)

    def load(self, pointer: Pointer, *, execution_id: str) -> bytes:
        """The verified payload behind ``pointer``, or a :class:`ResultUnavailable`."""
        location = self.checked_location(pointer, execution_id=execution_id)
        try:
            data = self._read(location)
        except ResultStorageError:
            raise
        except Exception as exc:
            raise ResultUnavailable(
                f"Result of execution {execution_id} could not be read from {location}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if data is None:
            raise ResultMissing(
                f"Result of execution {execution_id} is missing: nothing is stored at {location}."
            )
        found = Pointer.describing(self.backend, location, data)
        if (found.size, found.sha256) != (pointer.size, pointer.sha256):
            raise ResultCorrupted(
                f"Result of execution {execution_id} at {location} is corrupted: expected "
                f"{pointer.size} bytes with sha256 {pointer.sha256}, found {found.size} bytes "
                f"with sha256 {found.sha256}."
            )
        return data

    def delete(self, pointer: Pointer, *, execution_id: str) -> None:
        """Remove the payload behind ``pointer``; one already gone is not an error."""
        location = self.checked_location(pointer, execution_id=execution_id)
        try:
            self._delete(location)
        except ResultStorageError:
            raise
        except Exception as exc:
            raise ResultStorageError(
                f"Result of execution {execution_id} at {location} could not be deleted: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def checked_location(self, pointer: Pointer, *, execution_id: str) -> str:
        """``pointer.location`` if it is exactly this execution's own location, else refused.

        A location read from the database is trusted only when it equals the one
        derived again from the execution id and the attempt number it ends with.
        """
        match = _ATTEMPT_TAIL.search(pointer.location)
        key = result_key(execution_id, int(match["attempt"])) if match else None
        if key is None or self.location_of(key) != pointer.location:
            pattern = self.location_of(f"{_canonical(execution_id)}/<attempt>.json")
            raise UnsafeResultReference(
                f"Result reference of execution {execution_id} is refused: location "
                f"{pointer.location!r} is not where django-ray stores this execution's result "
                f"({pattern})."
            )
        return pointer.location


class DigestStorage(ResultStorage):
    """Keeps nothing but the pointer: size and sha256 of a result too large to keep inline."""

    backend = "digest"

    def location_of(self, key: str) -> str:
        return ""

    def _write(self, location: str, data: bytes) -> None:
        pass

    def _read(self, location: str) -> bytes | None:
        return None

    def _delete(self, location: str) -> None:
        pass

    def load(self, pointer: Pointer, *, execution_id: str) -> bytes:
        self.checked_location(pointer, execution_id=execution_id)
        limit = self.settings.max_result_size_bytes
        # The limit may have been raised since the result was recorded.
        limit_text = f"({limit})" if pointer.size > limit else f"when recorded (now {limit})"
        raise ResultDigestOnly(
            f"Result of execution {execution_id} was not kept: its JSON encoding is "
            f'{pointer.size} bytes, larger than DJANGO_RAY["MAX_RESULT_SIZE_BYTES"] '
            f"{limit_text}, so only its digest (sha256 {pointer.sha256}) was kept. Set "
            'DJANGO_RAY["RESULT_STORAGE_BACKEND"] to "filesystem", "s3" or "gcs" to store '
            "such results."
        )

    def checked_location(self, pointer: Pointer, *, execution_id: str) -> str:
        if pointer.location:
            raise UnsafeResultReference(
                f"Result reference of execution {execution_id} is refused: a digest pointer "
                f"has no location; got {pointer.location!r}."
            )
        return ""


def storage_for(settings: RaySettings, backend: str | None = None) -> ResultStorage:
    """The storage for ``backend`` (default: ``RESULT_STORAGE_BACKEND``) configured by ``settings``.

    Cheap to call per result: object store clients are made once per process.
    Raises :class:`ResultStorageError` when that backend cannot work in this process.
    """
    from django_ray.results.filesystem import FilesystemStorage
    from django_ray.results.gcs import GCSStorage
    from django_ray.results.s3 import S3Storage

    backend = settings.result_storage_backend if backend is None else backend
    kinds: dict[str, type[ResultStorage]] = {
        "digest": DigestStorage,
        "filesystem": FilesystemStorage,
        "s3": S3Storage,
        "gcs": GCSStorage,
    }
    if backend not in kinds:
        raise ResultStorageError(f"Unknown result storage backend {backend!r}.")
    if problem := missing_library_problem(backend):
        raise ResultStorageError(f'DJANGO_RAY["RESULT_STORAGE_BACKEND"] {problem}')
    return kinds[backend](settings)


def forget_clients() -> None:
    """Drop this process's object store clients; the next use makes new ones (tests, forks)."""
    from django_ray.results.gcs import gcs_client
    from django_ray.results.s3 import s3_client

    s3_client.cache_clear()
    gcs_client.cache_clear()
