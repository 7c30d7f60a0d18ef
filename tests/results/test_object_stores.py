"""The s3 and gcs backends against real HTTP APIs on loopback (moto's server, the GCS emulator).

Both backends share one behaviour, so each test runs against both; ``Store`` is
the test's own view of the server, independent of django-ray's code.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from django_ray.conf import RaySettings
from django_ray.results import (
    ResultCorrupted,
    ResultMissing,
    ResultStorageError,
    ResultWriteFailed,
    UnsafeResultReference,
    delete_result,
    encode_json,
    encode_result,
    forget_clients,
    load_result,
)
from django_ray.results.gcs import gcs_client
from django_ray.results.s3 import s3_client
from tests.results.conftest import BUCKET, OTHER_BUCKET, MakeSettings

VALUE = {"matrix": [[i * j for j in range(20)] for i in range(20)], "label": "größe"}


@dataclass
class Store:
    """One backend under test: its settings and direct access to the server's objects."""

    backend: str
    scheme: str
    base: dict[str, Any]
    put: Callable[[str, str, bytes], None]
    get: Callable[[str, str], bytes | None]

    def settings(self, make_settings: MakeSettings, **overrides: Any) -> RaySettings:
        return make_settings(MAX_RESULT_SIZE_BYTES=64, **{**self.base, **overrides})


def _s3_store(s3: Any, endpoint_url: str) -> Store:
    def get(bucket: str, key: str) -> bytes | None:
        try:
            data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return data

    return Store(
        backend="s3",
        scheme="s3",
        base={
            "RESULT_STORAGE_BACKEND": "s3",
            "RESULT_STORAGE_S3_BUCKET": BUCKET,
            "RESULT_STORAGE_S3_REGION": "us-east-1",
            "RESULT_STORAGE_S3_ENDPOINT_URL": endpoint_url,
        },
        put=lambda bucket, key, data: s3.put_object(Bucket=bucket, Key=key, Body=data),
        get=get,
    )


def _gcs_store(gcs: Any) -> Store:
    from google.api_core.exceptions import NotFound

    def get(bucket: str, key: str) -> bytes | None:
        try:
            data: bytes = gcs.bucket(bucket).blob(key).download_as_bytes()
        except NotFound:
            return None
        return data

    return Store(
        backend="gcs",
        scheme="gs",
        base={"RESULT_STORAGE_BACKEND": "gcs", "RESULT_STORAGE_GCS_BUCKET": BUCKET},
        put=lambda bucket, key, data: gcs.bucket(bucket).blob(key).upload_from_string(data),
        get=get,
    )


@pytest.fixture(params=["s3", "gcs"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "s3":
        endpoint_url = request.getfixturevalue("s3_server").url
        return _s3_store(request.getfixturevalue("s3"), endpoint_url)
    return _gcs_store(request.getfixturevalue("gcs"))


@pytest.fixture
def settings(store: Store, make_settings: MakeSettings) -> RaySettings:
    return store.settings(make_settings)


def _key(execution_id: str, attempt: int = 1) -> str:
    return f"django-ray/results/{execution_id}/{attempt}.json"


def test_round_trip_through_the_server(store: Store, settings: RaySettings, execution_id: str):
    stored = encode_result(VALUE, execution_id=execution_id, attempt=3, settings=settings)

    data = encode_json(VALUE)
    assert stored.reference == {
        "backend": store.backend,
        "location": f"{store.scheme}://{BUCKET}/{_key(execution_id, 3)}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "application/json",
    }
    assert store.get(BUCKET, _key(execution_id, 3)) == data
    assert load_result(stored.reference, execution_id=execution_id, settings=settings) == VALUE


def test_the_prefix_is_used_with_or_without_slashes(
    store: Store, make_settings: MakeSettings, execution_id: str
):
    prefix = f"RESULT_STORAGE_{store.backend.upper()}_PREFIX"
    settings = store.settings(make_settings, **{prefix: "/team/results/"})

    stored = encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)

    assert stored.reference is not None
    assert stored.reference["location"] == (
        f"{store.scheme}://{BUCKET}/team/results/{execution_id}/1.json"
    )
    assert store.get(BUCKET, f"team/results/{execution_id}/1.json") == encode_json(VALUE)


def test_a_changed_object_is_reported_not_returned(
    store: Store, settings: RaySettings, execution_id: str
):
    stored = encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)
    assert stored.reference is not None
    tampered = encode_json({**VALUE, "label": "small"})
    store.put(BUCKET, _key(execution_id), tampered)

    with pytest.raises(ResultCorrupted) as raised:
        load_result(stored.reference, execution_id=execution_id, settings=settings)

    assert str(raised.value) == (
        f"Result of execution {execution_id} at {stored.reference['location']} is corrupted: "
        f"expected {stored.reference['size']} bytes with sha256 {stored.reference['sha256']}, "
        f"found {len(tampered)} bytes with sha256 {hashlib.sha256(tampered).hexdigest()}."
    )


def test_a_deleted_object_is_reported_missing_and_delete_may_run_twice(
    store: Store, settings: RaySettings, execution_id: str
):
    stored = encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)
    assert stored.reference is not None

    assert delete_result(stored.reference, execution_id=execution_id, settings=settings)
    assert delete_result(stored.reference, execution_id=execution_id, settings=settings)

    assert store.get(BUCKET, _key(execution_id)) is None
    with pytest.raises(ResultMissing) as raised:
        load_result(stored.reference, execution_id=execution_id, settings=settings)
    assert str(raised.value) == (
        f"Result of execution {execution_id} is missing: nothing is stored at "
        f"{stored.reference['location']}."
    )


@pytest.mark.parametrize(
    "location",
    [
        "{scheme}://{other_bucket}/django-ray/results/{id}/1.json",
        "{scheme}://{bucket}/django-ray/results/{other}/1.json",
        "{scheme}://{bucket}/elsewhere/{id}/1.json",
        "{scheme}://{bucket}/django-ray/results/../results/{id}/1.json",
        "{scheme}://{bucket}/django-ray/results/{id}/../{other}/1.json",
        "{wrong}://{bucket}/django-ray/results/{id}/1.json",
        "/django-ray/results/{id}/1.json",
    ],
)
def test_a_location_other_than_the_derived_one_is_refused(
    store: Store, settings: RaySettings, execution_id: str, location: str
):
    other = "0f0c8a9e-4f39-4b7c-9d61-2f4a3c1b2a10"
    secret = encode_json({"secret": True})
    store.put(OTHER_BUCKET, _key(execution_id), secret)
    store.put(BUCKET, _key(other), secret)
    location = location.format(
        scheme=store.scheme,
        wrong="gs" if store.scheme == "s3" else "s3",
        bucket=BUCKET,
        other_bucket=OTHER_BUCKET,
        id=execution_id,
        other=other,
    )
    reference = {
        "backend": store.backend,
        "location": location,
        "size": len(secret),
        "sha256": hashlib.sha256(secret).hexdigest(),
        "content_type": "application/json",
    }

    with pytest.raises(UnsafeResultReference) as raised:
        load_result(reference, execution_id=execution_id, settings=settings)

    assert str(raised.value) == (
        f"Result reference of execution {execution_id} is refused: location {location!r} is not "
        f"where django-ray stores this execution's result "
        f"({store.scheme}://{BUCKET}/django-ray/results/{execution_id}/<attempt>.json)."
    )


def test_a_write_to_a_missing_bucket_fails_the_attempt(
    store: Store, make_settings: MakeSettings, execution_id: str
):
    bucket = f"RESULT_STORAGE_{store.backend.upper()}_BUCKET"
    settings = store.settings(make_settings, **{bucket: "no-such-bucket"})

    with pytest.raises(ResultWriteFailed) as raised:
        encode_result(VALUE, execution_id=execution_id, attempt=2, settings=settings)

    assert str(raised.value).startswith(
        f"Result of execution {execution_id} attempt 2 could not be written to "
        f"{store.scheme}://no-such-bucket/{_key(execution_id, 2)}: "
    )
    assert ("NoSuchBucket" if store.backend == "s3" else "404") in str(raised.value)


def test_one_client_per_process_serves_every_result(store: Store, settings: RaySettings):
    cached = s3_client if store.backend == "s3" else gcs_client
    forget_clients()

    for attempt in (1, 2, 3):
        execution_id = str(uuid.uuid4())
        stored = encode_result(VALUE, execution_id=execution_id, attempt=attempt, settings=settings)
        load_result(stored.reference, execution_id=execution_id, settings=settings)

    assert (cached.cache_info().misses, cached.cache_info().currsize) == (1, 1)


def test_a_failed_delete_is_a_storage_error(
    s3_server: Any, s3: Any, make_settings: MakeSettings, execution_id: str
):
    settings = _s3_store(s3, s3_server.url).settings(
        make_settings, RESULT_STORAGE_S3_BUCKET="no-such-bucket"
    )
    location = f"s3://no-such-bucket/{_key(execution_id)}"
    reference = {
        "backend": "s3",
        "location": location,
        "size": 2,
        "sha256": hashlib.sha256(b"{}").hexdigest(),
        "content_type": "application/json",
    }

    with pytest.raises(ResultStorageError) as raised:
        delete_result(reference, execution_id=execution_id, settings=settings)

    assert str(raised.value).startswith(
        f"Result of execution {execution_id} at {location} could not be deleted: NoSuchBucket: "
    )
