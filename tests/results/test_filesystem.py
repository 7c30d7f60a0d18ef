"""The filesystem backend: round trip, verification, traversal refused, atomic writes."""

from __future__ import annotations

import errno
import hashlib
import os
import pathlib

import pytest

from django_ray.conf import RaySettings
from django_ray.results import (
    ResultCorrupted,
    ResultMissing,
    ResultWriteFailed,
    UnsafeResultReference,
    delete_result,
    encode_json,
    encode_result,
    load_result,
)
from tests.results.conftest import MakeSettings

VALUE = {"rows": list(range(50)), "name": "naïve"}


@pytest.fixture
def settings(make_settings: MakeSettings) -> RaySettings:
    return make_settings(MAX_RESULT_SIZE_BYTES=16, RESULT_STORAGE_BACKEND="filesystem")


@pytest.fixture
def root(settings: RaySettings) -> pathlib.Path:
    assert settings.result_storage_filesystem_path is not None
    return pathlib.Path(settings.result_storage_filesystem_path)


def test_round_trip(settings: RaySettings, root: pathlib.Path, execution_id: str):
    stored = encode_result(VALUE, execution_id=execution_id, attempt=2, settings=settings)

    data = encode_json(VALUE)
    path = root / execution_id / "2.json"
    assert stored.reference == {
        "backend": "filesystem",
        "location": str(path),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "application/json",
    }
    assert path.read_bytes() == data
    assert os.listdir(path.parent) == ["2.json"]
    assert load_result(stored.reference, execution_id=execution_id, settings=settings) == VALUE


def test_a_changed_file_is_reported_not_returned(
    settings: RaySettings, root: pathlib.Path, execution_id: str
):
    stored = encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)
    path = root / execution_id / "1.json"
    path.write_bytes(encode_json({**VALUE, "name": "naive!"}))
    assert stored.reference is not None
    found = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(ResultCorrupted) as raised:
        load_result(stored.reference, execution_id=execution_id, settings=settings)

    assert str(raised.value) == (
        f"Result of execution {execution_id} at {path} is corrupted: expected "
        f"{stored.reference['size']} bytes with sha256 {stored.reference['sha256']}, found "
        f"{stored.reference['size']} bytes with sha256 {found}."
    )


def test_a_deleted_file_is_reported_missing(
    settings: RaySettings, root: pathlib.Path, execution_id: str
):
    stored = encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)
    (root / execution_id / "1.json").unlink()

    with pytest.raises(ResultMissing) as raised:
        load_result(stored.reference, execution_id=execution_id, settings=settings)

    assert str(raised.value) == (
        f"Result of execution {execution_id} is missing: nothing is stored at "
        f"{root / execution_id / '1.json'}."
    )


def test_delete_removes_the_file_and_its_directory_and_may_run_twice(
    settings: RaySettings, root: pathlib.Path, execution_id: str
):
    stored = encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)

    assert delete_result(stored.reference, execution_id=execution_id, settings=settings)
    assert delete_result(stored.reference, execution_id=execution_id, settings=settings)
    assert os.listdir(root) == []


def _pointer_at(location: str, data: bytes) -> dict[str, object]:
    return {
        "backend": "filesystem",
        "location": location,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "application/json",
    }


@pytest.mark.parametrize(
    "location",
    [
        "{root}/{id}/../{other}/1.json",
        "{root}/../secret.json",
        "{root}/{other}/1.json",
        "{root}/{id}/1.json/../../{other}/1.json",
        "{root}/{id}/01.json",
        "{root}/{id}/1.json.bak",
        "{root}//{id}/1.json",
        "{outside}/{id}/1.json",
        "/etc/passwd",
        "{id}/1.json",
        "",
    ],
)
def test_a_location_other_than_the_derived_one_is_refused(
    settings: RaySettings, root: pathlib.Path, tmp_path: pathlib.Path, execution_id: str, location
):
    other = "0f0c8a9e-4f39-4b7c-9d61-2f4a3c1b2a10"
    secret = encode_json({"secret": True})
    for path in (root / other / "1.json", root.parent / "secret.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secret)
    location = location.format(
        root=root, id=execution_id, other=other, outside=tmp_path / "outside"
    )

    with pytest.raises(UnsafeResultReference) as raised:
        load_result(_pointer_at(location, secret), execution_id=execution_id, settings=settings)

    assert str(raised.value) == (
        f"Result reference of execution {execution_id} is refused: location {location!r} is not "
        f"where django-ray stores this execution's result ({root}/{execution_id}/<attempt>.json)."
    )


def test_a_symlinked_file_is_refused(settings: RaySettings, root: pathlib.Path, execution_id: str):
    secret = root.parent / "secret.json"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(b'{"secret":true}')
    (root / execution_id).mkdir(parents=True)
    (root / execution_id / "1.json").symlink_to(secret)
    location = str(root / execution_id / "1.json")

    with pytest.raises(UnsafeResultReference) as raised:
        load_result(
            _pointer_at(location, secret.read_bytes()), execution_id=execution_id, settings=settings
        )

    assert str(raised.value) == (
        f"Result reference of execution {execution_id} is refused: {location} is a symbolic "
        "link or not a regular file; only plain files below RESULT_STORAGE_FILESYSTEM_PATH "
        "are read."
    )


def test_a_symlinked_directory_is_refused(
    settings: RaySettings, root: pathlib.Path, tmp_path: pathlib.Path, execution_id: str
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "1.json").write_bytes(b'{"secret":true}')
    root.mkdir(parents=True)
    (root / execution_id).symlink_to(elsewhere, target_is_directory=True)
    location = str(root / execution_id / "1.json")

    with pytest.raises(UnsafeResultReference) as raised:
        load_result(
            _pointer_at(location, b'{"secret":true}'), execution_id=execution_id, settings=settings
        )

    assert str(raised.value) == (
        f"Result reference of execution {execution_id} is refused: {root / execution_id} is a "
        "symbolic link or not a regular file; only plain files below "
        "RESULT_STORAGE_FILESYSTEM_PATH are read."
    )
    # Nor does a write follow it.
    with pytest.raises(ResultWriteFailed):
        encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)
    assert (elsewhere / "1.json").read_bytes() == b'{"secret":true}'


def test_a_fifo_is_refused_without_blocking(
    settings: RaySettings, root: pathlib.Path, execution_id: str
):
    (root / execution_id).mkdir(parents=True)
    os.mkfifo(root / execution_id / "1.json")
    location = str(root / execution_id / "1.json")

    with pytest.raises(UnsafeResultReference, match="is a symbolic link or not a regular file"):
        load_result(_pointer_at(location, b"{}"), execution_id=execution_id, settings=settings)


def test_a_root_reached_through_a_symlink_is_fine(
    make_settings: MakeSettings, tmp_path: pathlib.Path, execution_id: str
):
    (tmp_path / "volume").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "volume", target_is_directory=True)
    settings = make_settings(
        MAX_RESULT_SIZE_BYTES=16,
        RESULT_STORAGE_BACKEND="filesystem",
        RESULT_STORAGE_FILESYSTEM_PATH=str(tmp_path / "link"),
    )

    stored = encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)

    assert load_result(stored.reference, execution_id=execution_id, settings=settings) == VALUE
    assert (tmp_path / "volume" / execution_id / "1.json").is_file()


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_leaves_no_file_behind(
    settings: RaySettings,
    root: pathlib.Path,
    execution_id: str,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
):
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, no_space)

    with pytest.raises(ResultWriteFailed) as raised:
        encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)

    monkeypatch.undo()
    assert str(raised.value) == (
        f"Result of execution {execution_id} attempt 1 could not be written to "
        f"{root / execution_id / '1.json'}: OSError: [Errno 28] No space left on device"
    )
    assert os.listdir(root / execution_id) == []


def test_a_failed_rewrite_keeps_the_earlier_file_whole(
    settings: RaySettings, root: pathlib.Path, execution_id: str, monkeypatch: pytest.MonkeyPatch
):
    encode_result(VALUE, execution_id=execution_id, attempt=1, settings=settings)
    before = (root / execution_id / "1.json").read_bytes()
    real_write = os.write

    def half_then_fail(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(ResultWriteFailed):
        encode_result(
            {"other": "value" * 10}, execution_id=execution_id, attempt=1, settings=settings
        )
    monkeypatch.undo()

    assert os.listdir(root / execution_id) == ["1.json"]
    assert (root / execution_id / "1.json").read_bytes() == before
