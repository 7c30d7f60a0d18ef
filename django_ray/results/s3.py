"""``s3``: payloads as objects ``s3://<bucket>/<prefix>/<execution id>/<attempt>.json`` (boto3).

boto3 finds credentials its usual way (environment, shared files, instance role);
``RESULT_STORAGE_S3_ENDPOINT_URL`` points it at an S3-compatible store.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

from django_ray.results.errors import ResultStorageError
from django_ray.results.storage import CONTENT_TYPE, ResultStorage, object_name

if TYPE_CHECKING:
    from django_ray.conf import RaySettings

_MISSING = frozenset({"NoSuchKey", "404"})


@functools.cache
def s3_client(region: str | None, endpoint_url: str | None) -> Any:
    """One boto3 S3 client per process and configuration (boto3 clients are thread-safe)."""
    import boto3

    return boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint_url)


class S3Storage(ResultStorage):
    """Objects in ``RESULT_STORAGE_S3_BUCKET`` under ``RESULT_STORAGE_S3_PREFIX``."""

    backend = "s3"

    def __init__(self, settings: RaySettings) -> None:
        super().__init__(settings)
        if not settings.result_storage_s3_bucket:
            raise ResultStorageError(
                'DJANGO_RAY["RESULT_STORAGE_S3_BUCKET"] is not set; results stored in S3 '
                "cannot be reached."
            )
        self.bucket = settings.result_storage_s3_bucket
        self.prefix = settings.result_storage_s3_prefix

    def location_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{object_name(self.prefix, key)}"

    def _write(self, location: str, data: bytes) -> None:
        self._client().put_object(
            Bucket=self.bucket, Key=self._key(location), Body=data, ContentType=CONTENT_TYPE
        )

    def _read(self, location: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            response = self._client().get_object(Bucket=self.bucket, Key=self._key(location))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        with contextlib.closing(response["Body"]) as body:
            data: bytes = body.read()
        return data

    def _delete(self, location: str) -> None:
        # S3 answers a delete of a missing key with success.
        self._client().delete_object(Bucket=self.bucket, Key=self._key(location))

    def _key(self, location: str) -> str:
        return location.removeprefix(f"s3://{self.bucket}/")

    def _client(self) -> Any:
        return s3_client(
            self.settings.result_storage_s3_region, self.settings.result_storage_s3_endpoint_url
        )
