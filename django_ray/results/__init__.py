"""Results too large for ``result_data``: stored by a backend, pointed to by ``result_reference``.

A pointer (``TaskExecution.result_reference``) is always::

    {"backend": "digest" | "filesystem" | "s3" | "gcs",
     "location": "<path>" | "s3://bucket/key" | "gs://bucket/key" | "",
     "size": <bytes of compact UTF-8 JSON>, "sha256": "<hex>",
     "content_type": "application/json"}

Keys are ``<prefix or root>/<execution id>/<attempt>.json``, derived from the
execution id and attempt only; a location read back is trusted only if it is
exactly the one derived again.
"""

from django_ray.results.codec import (
    StoredResult,
    delete_result,
    encode_json,
    encode_result,
    load_result,
)
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
from django_ray.results.storage import (
    Pointer,
    ResultStorage,
    forget_clients,
    result_key,
    storage_for,
)

__all__ = [
    "Pointer",
    "ResultCorrupted",
    "ResultDigestOnly",
    "ResultMissing",
    "ResultStorage",
    "ResultStorageError",
    "ResultUnavailable",
    "ResultWriteFailed",
    "StoredResult",
    "UnsafeResultReference",
    "delete_result",
    "encode_json",
    "encode_result",
    "forget_clients",
    "load_result",
    "missing_library_problem",
    "result_key",
    "storage_for",
]
