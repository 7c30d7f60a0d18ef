"""Optional client libraries of the object store backends, and what to install when one is missing.

Nothing here imports Django models or settings, so ``django_ray.conf`` may use it
while it validates ``DJANGO_RAY``.
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple


class Library(NamedTuple):
    module: str
    distribution: str
    extra: str


LIBRARIES = {
    "s3": Library("boto3", "boto3", "s3"),
    "gcs": Library("google.cloud.storage", "google-cloud-storage", "gcs"),
}
"""The client library each object store backend imports, by backend name."""


def missing_library_problem(backend: str) -> str | None:
    """Why ``backend`` cannot work here (its client library is missing), or None when it can.

    The sentence follows the setting's name, as in ``DJANGO_RAY["RESULT_STORAGE_BACKEND"] is
    "s3", but boto3 is not installed; run: pip install boto3 (django-ray's "s3" extra).``
    It names the library, not ``django-ray[s3]``: on PyPI the name django-ray belongs to an
    unrelated project.
    """
    library = LIBRARIES.get(backend)
    if library is None or _importable(library.module):
        return None
    return (
        f'is "{backend}", but {library.distribution} is not installed; '
        f'run: pip install {library.distribution} (django-ray\'s "{library.extra}" extra).'
    )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package ("google") is missing
        return False
