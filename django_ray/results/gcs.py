"""``gcs``: payloads as objects ``gs://<bucket>/<prefix>/<execution id>/<attempt>.json``.

google-cloud-storage finds credentials its usual way (Application Default
Credentials); it honours ``STORAGE_EMULATOR_HOST`` for an emulator.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django_ray.results.errors import ResultStorageError
from django_ray.results.storage import CONTENT_TYPE, ResultStorage, object_name

if TYPE_CHECKING:
    from django_ray.conf import RaySettings


@functools.cache
def gcs_client() -> Any:
    """One Cloud Storage client per process."""
    from google.cloud import storage

    return storage.Client()


class GCSStorage(ResultStorage):
    """Objects in ``RESULT_STORAGE_GCS_BUCKET`` under ``RESULT_STORAGE_GCS_PREFIX``."""

    backend = "gcs"

    def __init__(self, settings: RaySettings) -> None:
        super().__init__(settings)
        if not settings.result_storage_gcs_bucket:
            raise ResultStorageError(
                'DJANGO_RAY["RESULT_STORAGE_GCS_BUCKET"] is not set; results stored in Google '
                "Cloud Storage cannot be reached."
            )
        self.bucket = settings.result_storage_gcs_bucket
        self.prefix = settings.result_storage_gcs_prefix

    def location_of(self, key: str) -> str:
        return f"gs://{self.bucket}/{object_name(self.prefix, key)}"

    def _write(self, location: str, data: bytes) -> None:
        self._blob(location).upload_from_string(data, content_type=CONTENT_TYPE)

    def _read(self, location: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            data: bytes = self._blob(location).download_as_bytes()
        except NotFound:
            return None
        return data

    def _delete(self, location: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self._blob(location).delete()
        except NotFound:
            return

    def _blob(self, location: str) -> Any:
        name = location.removeprefix(f"gs://{self.bucket}/")
        return gcs_client().bucket(self.bucket).blob(name)
