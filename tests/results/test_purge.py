"""``django_ray_purge`` against the real database and real payloads (files and S3 objects)."""

from __future__ import annotations

import io
import pathlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_ray.conf import get_settings
from django_ray.models import TaskExecution
from django_ray.results import encode_result
from tests.object_stores import ObjectStoreServer
from tests.results.conftest import BUCKET

pytestmark = pytest.mark.django_db

BIG = {"payload": "x" * 100}


@pytest.fixture
def configured(settings: Any, tmp_path: pathlib.Path, s3_server: ObjectStoreServer, s3: Any):
    """Filesystem storage by default; S3 configured too, for pointers written earlier."""
    settings.DJANGO_RAY = {
        **settings.DJANGO_RAY,
        "MAX_RESULT_SIZE_BYTES": 16,
        "RESULT_STORAGE_BACKEND": "filesystem",
        "RESULT_STORAGE_FILESYSTEM_PATH": str(tmp_path / "results"),
        "RESULT_STORAGE_S3_BUCKET": BUCKET,
        "RESULT_STORAGE_S3_REGION": "us-east-1",
        "RESULT_STORAGE_S3_ENDPOINT_URL": s3_server.url,
    }
    return tmp_path / "results"


def _row(state: str, days_ago: float | None, payload: str | None = None) -> TaskExecution:
    """A row in ``state``, finished ``days_ago``, with a payload stored by ``payload``."""
    finished_at = None if days_ago is None else timezone.now() - timedelta(days=days_ago)
    row = TaskExecution.objects.create(
        task_path="tests.testapp.tasks.add", state=state, finished_at=finished_at, attempt=1
    )
    if payload is not None:
        settings = replace(get_settings(), result_storage_backend=payload)
        stored = encode_result(BIG, execution_id=str(row.pk), attempt=1, settings=settings)
        row.result_reference = stored.reference
        row.save(update_fields=["result_reference"])
    return row


def _purge(*args: str) -> str:
    out = io.StringIO()
    call_command("django_ray_purge", *args, stdout=out)
    return out.getvalue()


def _s3_keys(s3: Any) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_old_finished_rows_go_in_batches_with_their_payloads(
    configured: pathlib.Path, s3: Any, django_assert_num_queries: Any
):
    old = [
        _row("SUCCESSFUL", 40, "filesystem"),
        _row("SUCCESSFUL", 35, "s3"),
        _row("FAILED", 31),
        _row("SUCCESSFUL", 50, "digest"),
        _row("FAILED", 60, "filesystem"),
    ]
    kept = [
        _row("SUCCESSFUL", 29, "filesystem"),
        _row("FAILED", 1),
        _row("RUNNING", 90),
        _row("READY", None),
        _row("READY", 90),
    ]
    s3_key = f"django-ray/results/{old[1].pk}/1.json"
    assert s3_key in _s3_keys(s3)

    # Three batches of at most two: a SELECT and one DELETE each, then the empty SELECT.
    with django_assert_num_queries(7):
        output = _purge("--older-than", "30", "--batch-size", "2")

    assert output == (
        "Deleted 5 finished task execution(s) (FAILED, SUCCESSFUL) and 3 stored result "
        "payload(s), finished over 30 day(s) ago.\n"
    )
    assert set(TaskExecution.objects.values_list("pk", flat=True)) == {row.pk for row in kept}
    assert sorted(p.name for p in configured.iterdir()) == [str(kept[0].pk)]
    assert s3_key not in _s3_keys(s3)


def test_only_the_states_asked_for(configured: pathlib.Path):
    failed, successful = _row("FAILED", 40, "filesystem"), _row("SUCCESSFUL", 40, "filesystem")

    output = _purge("--older-than", "30", "--state", "FAILED")

    assert output == (
        "Deleted 1 finished task execution(s) (FAILED) and 1 stored result payload(s), "
        "finished over 30 day(s) ago.\n"
    )
    assert list(TaskExecution.objects.values_list("pk", flat=True)) == [successful.pk]
    assert [p.name for p in configured.iterdir()] == [str(successful.pk)]
    assert not TaskExecution.objects.filter(pk=failed.pk).exists()


def test_a_dry_run_counts_and_deletes_nothing(configured: pathlib.Path):
    _row("SUCCESSFUL", 40, "filesystem")
    _row("SUCCESSFUL", 40, "digest")
    _row("FAILED", 40)
    _row("RUNNING", 40)

    output = _purge("--older-than", "30", "--dry-run")

    assert output == (
        "Would delete 3 finished task execution(s) (FAILED, SUCCESSFUL) and 1 stored result "
        "payload(s), finished over 30 day(s) ago.\n"
    )
    assert TaskExecution.objects.count() == 4
    assert len(list(configured.iterdir())) == 1


def test_a_payload_already_gone_does_not_stop_a_purge_and_a_rerun_finds_nothing(
    configured: pathlib.Path,
):
    row = _row("SUCCESSFUL", 40, "filesystem")
    (configured / str(row.pk) / "1.json").unlink()

    first = _purge("--older-than", "30")
    again = _purge("--older-than", "30")

    assert first.startswith("Deleted 1 finished task execution(s) (FAILED, SUCCESSFUL) and 1 ")
    assert again == (
        "Deleted 0 finished task execution(s) (FAILED, SUCCESSFUL) and 0 stored result "
        "payload(s), finished over 30 day(s) ago.\n"
    )
    assert not TaskExecution.objects.exists()


def test_a_refused_pointer_stops_the_purge_and_keeps_its_row(configured: pathlib.Path):
    row = _row("SUCCESSFUL", 40, "filesystem")
    assert row.result_reference is not None
    location = "/etc/passwd"
    TaskExecution.objects.filter(pk=row.pk).update(
        result_reference={**row.result_reference, "location": location}
    )

    with pytest.raises(CommandError) as raised:
        _purge("--older-than", "30")

    assert str(raised.value) == (
        f"Purge stopped: Result reference of execution {row.pk} is refused: location "
        f"{location!r} is not where django-ray stores this execution's result "
        f"({configured}/{row.pk}/<attempt>.json)."
    )
    assert TaskExecution.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "-1"], "--older-than must be at least 0; got -1."),
        (["--older-than", "1", "--batch-size", "0"], "--batch-size must be at least 1; got 0."),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str):
    with pytest.raises(CommandError) as raised:
        _purge(*args)

    assert str(raised.value) == message


@pytest.mark.parametrize("state", ["READY", "RUNNING"])
def test_unfinished_states_cannot_be_asked_for(state: str):
    # argparse words the rest of the message differently across Python versions.
    with pytest.raises(CommandError, match=f"argument --state: invalid choice: '{state}'"):
        _purge("--older-than", "1", "--state", state)
