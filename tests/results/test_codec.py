"""Inline or stored: the size boundary, the pointer, the digest backend and malformed pointers."""

from __future__ import annotations

import hashlib
import json

import pytest

from django_ray.conf import RaySettings
from django_ray.payloads import PayloadError
from django_ray.results import (
    ResultCorrupted,
    ResultDigestOnly,
    ResultUnavailable,
    StoredResult,
    UnsafeResultReference,
    encode_json,
    encode_result,
    load_result,
    result_key,
)
from tests.results.conftest import MakeSettings

# 12 bytes of compact JSON: 11 characters, and "é" takes 2 bytes in UTF-8.
VALUE = {"é": [1, 2]}
ENCODED = b'{"\xc3\xa9":[1,2]}'
_ID = "8f0c8a9e-4f39-4b7c-9d61-2f4a3c1b2a10"


def _digest() -> dict[str, object]:
    return {
        "backend": "digest",
        "location": "",
        "size": 12,
        "sha256": hashlib.sha256(ENCODED).hexdigest(),
        "content_type": "application/json",
    }


def test_json_is_compact_utf8():
    assert encode_json(VALUE) == ENCODED
    assert len(ENCODED) == 12


@pytest.mark.parametrize("limit", [12, 13, 1_000_000])
def test_a_value_at_or_below_the_limit_stays_inline(make_settings: MakeSettings, limit: int):
    settings = make_settings(MAX_RESULT_SIZE_BYTES=limit, RESULT_STORAGE_BACKEND="filesystem")

    stored = encode_result(VALUE, execution_id=_ID, attempt=1, settings=settings)

    assert stored == StoredResult(inline=VALUE)
    assert stored.is_inline


def test_none_inline_is_told_apart_from_a_reference(make_settings: MakeSettings):
    stored = encode_result(None, execution_id=_ID, attempt=1, settings=make_settings())

    assert (stored.inline, stored.reference, stored.is_inline) == (None, None, True)


def test_one_byte_over_the_limit_keeps_a_digest(make_settings: MakeSettings):
    settings = make_settings(MAX_RESULT_SIZE_BYTES=11)

    stored = encode_result(VALUE, execution_id=_ID, attempt=2, settings=settings)

    assert stored == StoredResult(
        reference={
            "backend": "digest",
            "location": "",
            "size": 12,
            "sha256": hashlib.sha256(ENCODED).hexdigest(),
            "content_type": "application/json",
        }
    )
    assert json.loads(json.dumps(stored.reference)) == stored.reference


def test_a_digest_cannot_be_loaded_and_says_why(make_settings: MakeSettings):
    settings = make_settings(MAX_RESULT_SIZE_BYTES=11)
    stored = encode_result(VALUE, execution_id=_ID, attempt=1, settings=settings)

    with pytest.raises(ResultDigestOnly) as raised:
        load_result(stored.reference, execution_id=_ID, settings=settings)

    assert str(raised.value) == (
        f"Result of execution {_ID} was not kept: its JSON encoding is 12 bytes, larger than "
        'DJANGO_RAY["MAX_RESULT_SIZE_BYTES"] (11), so only its digest (sha256 '
        f"{hashlib.sha256(ENCODED).hexdigest()}) was kept. Set "
        'DJANGO_RAY["RESULT_STORAGE_BACKEND"] to "filesystem", "s3" or "gcs" to store such '
        "results."
    )
    assert isinstance(raised.value, ResultUnavailable)


def test_a_digest_pointer_with_a_location_is_refused(make_settings: MakeSettings):
    reference = {**_digest(), "location": "/etc/passwd"}

    with pytest.raises(UnsafeResultReference) as raised:
        load_result(reference, execution_id=_ID, settings=make_settings())

    assert str(raised.value) == (
        f"Result reference of execution {_ID} is refused: a digest pointer has no location; "
        "got '/etc/passwd'."
    )


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        (None, "expected a dict; got None"),
        (
            {"backend": "digest"},
            "expected the keys ['backend', 'content_type', 'location', 'sha256', 'size']; "
            "got ['backend']",
        ),
        ({**_digest(), "backend": "ftp"}, "\"backend\" is not valid; got 'ftp'"),
        ({**_digest(), "size": "12"}, "\"size\" is not valid; got '12'"),
        ({**_digest(), "size": True}, '"size" is not valid; got True'),
        ({**_digest(), "sha256": "ABC"}, "\"sha256\" is not valid; got 'ABC'"),
        (
            {**_digest(), "content_type": "text/html"},
            "\"content_type\" is not valid; got 'text/html'",
        ),
    ],
)
def test_a_malformed_pointer_is_refused(make_settings: MakeSettings, reference, problem):
    with pytest.raises(UnsafeResultReference) as raised:
        load_result(reference, execution_id=_ID, settings=make_settings())

    assert str(raised.value) == f"Result reference of execution {_ID} is malformed: {problem}."


def test_a_lone_surrogate_is_a_payload_error(make_settings: MakeSettings):
    with pytest.raises(PayloadError, match=f"^Result of execution {_ID} cannot be stored as UTF-8"):
        encode_result("\ud800", execution_id=_ID, attempt=1, settings=make_settings())


@pytest.mark.parametrize(
    ("execution_id", "attempt", "message"),
    [
        ("../../etc", 1, "An execution id must be a UUID; got '../../etc'."),
        (None, 1, "An execution id must be a UUID; got None."),
        (
            "8f0c8a9e-4f39-4b7c-9d61-2f4a3c1b2a10",
            0,
            "An attempt must be a positive integer; got 0.",
        ),
        (
            "8f0c8a9e-4f39-4b7c-9d61-2f4a3c1b2a10",
            True,
            "An attempt must be a positive integer; got True.",
        ),
        (
            "8f0c8a9e-4f39-4b7c-9d61-2f4a3c1b2a10",
            "1",
            "An attempt must be a positive integer; got '1'.",
        ),
    ],
)
def test_keys_come_only_from_a_uuid_and_an_attempt(execution_id, attempt, message):
    with pytest.raises(ValueError) as raised:
        result_key(execution_id, attempt)

    assert str(raised.value) == message


def test_the_key_is_the_canonical_uuid_and_attempt():
    assert result_key("8F0C8A9E4F394B7C9D612F4A3C1B2A10", 3) == (
        "8f0c8a9e-4f39-4b7c-9d61-2f4a3c1b2a10/3.json"
    )


def test_a_digest_recorded_under_a_lower_limit_says_so(make_settings: MakeSettings):
    with pytest.raises(ResultDigestOnly) as raised:
        load_result(_digest(), execution_id=_ID, settings=make_settings())

    assert (
        'its JSON encoding is 12 bytes, larger than DJANGO_RAY["MAX_RESULT_SIZE_BYTES"] when '
        "recorded (now 1048576), so only its digest"
    ) in str(raised.value)


@pytest.mark.parametrize(
    ("backend", "location", "setting", "where"),
    [
        ("s3", f"s3://b/{_ID}/1.json", "RESULT_STORAGE_S3_BUCKET", "in S3"),
        ("gcs", f"gs://b/{_ID}/1.json", "RESULT_STORAGE_GCS_BUCKET", "in Google Cloud Storage"),
        ("filesystem", f"/r/{_ID}/1.json", "RESULT_STORAGE_FILESYSTEM_PATH", "on the filesystem"),
    ],
)
def test_a_pointer_to_storage_not_configured_here_says_which_setting(
    backend: str, location: str, setting: str, where: str
):
    reference = {**_digest(), "backend": backend, "location": location}

    with pytest.raises(ResultUnavailable) as raised:
        load_result(reference, execution_id=_ID, settings=RaySettings.from_mapping({}))

    assert str(raised.value) == (
        f"Result of execution {_ID} at {location} is unavailable here: "
        f'DJANGO_RAY["{setting}"] is not set; results stored {where} cannot be reached.'
    )


def test_verified_bytes_that_are_not_json_are_corrupted(make_settings: MakeSettings, tmp_path):
    settings = make_settings(RESULT_STORAGE_BACKEND="filesystem")
    path = tmp_path / "results" / _ID / "1.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff not json")
    reference = {
        **_digest(),
        "backend": "filesystem",
        "location": str(path),
        "size": 10,
        "sha256": hashlib.sha256(b"\xff not json").hexdigest(),
    }

    with pytest.raises(ResultCorrupted) as raised:
        load_result(reference, execution_id=_ID, settings=settings)

    assert str(raised.value).startswith(
        f"Result of execution {_ID} at {path} is corrupted: it is not UTF-8 JSON ("
    )
