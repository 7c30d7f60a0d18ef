"""Result storage fixtures: the object store servers for the session, buckets, settings.

The servers run on loopback in this process; nothing here skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_ray.conf import RaySettings
from django_ray.results import forget_clients
from tests.object_stores import ObjectStoreServer, start_gcs_server, start_s3_server

BUCKET = "django-ray-results"
OTHER_BUCKET = "someone-elses-bucket"

MakeSettings = Callable[..., RaySettings]


def _serve(server: ObjectStoreServer) -> Iterator[ObjectStoreServer]:
    """Expose ``server`` to clients through the environment while the session lasts."""
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in server.unset:
                patch.delenv(name, raising=False)
            for name, value in server.environ.items():
                patch.setenv(name, value)
            forget_clients()  # a client made before would not see this environment
            yield server
    finally:
        forget_clients()
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[ObjectStoreServer]:
    """moto's S3 server on 127.0.0.1, with dummy AWS credentials in the environment."""
    yield from _serve(start_s3_server())


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[ObjectStoreServer]:
    """The Cloud Storage emulator on 127.0.0.1, with STORAGE_EMULATOR_HOST set."""
    yield from _serve(start_gcs_server())


@pytest.fixture(scope="session")
def s3(s3_server: ObjectStoreServer) -> Any:
    """A boto3 client of the S3 server, buckets created; tests use it to look behind our back."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1")
    for bucket in (BUCKET, OTHER_BUCKET):
        client.create_bucket(Bucket=bucket)
    return client


@pytest.fixture(scope="session")
def gcs(gcs_server: ObjectStoreServer) -> Any:
    """A google-cloud-storage client of the emulator, buckets created; the tests' own."""
    from google.cloud import storage

    client = storage.Client()
    for bucket in (BUCKET, OTHER_BUCKET):
        client.create_bucket(bucket)
    return client


@pytest.fixture
def make_settings(tmp_path: Any) -> MakeSettings:
    """Validated settings over ``DJANGO_RAY``-style overrides; files go to ``tmp_path``."""

    def make(**overrides: Any) -> RaySettings:
        return RaySettings.from_mapping(
            {"RESULT_STORAGE_FILESYSTEM_PATH": str(tmp_path / "results"), **overrides}
        )

    return make


@pytest.fixture
def execution_id() -> str:
    return str(uuid.uuid4())
