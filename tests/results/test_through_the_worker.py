"""Large results through the real worker: stored where produced, reloaded by get_result."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.tasks import TaskResultStatus, default_task_backend

from django_ray.models import TaskExecution
from django_ray.results import ResultDigestOnly
from django_ray.testing import drain
from tests.results.conftest import BUCKET
from tests.testapp import tasks


def use(settings, env_vars=None, **values):
    """Result settings here and, through the runtime env, in the processes Ray starts."""
    values = {"MAX_RESULT_SIZE_BYTES": 100, **values}
    if env_vars is not None:
        env_vars = {**env_vars, "DJANGO_RAY_TEST_OVERRIDES": json.dumps(values)}
        values["RAY_RUNTIME_ENV"] = {"env_vars": env_vars}
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, **values}


@pytest.mark.django_db
def test_a_small_value_stays_in_the_row(settings, tmp_path):
    use(settings, RESULT_STORAGE_BACKEND="filesystem", RESULT_STORAGE_FILESYSTEM_PATH=str(tmp_path))
    result = tasks.big.enqueue(98)  # "x" * 98 is 100 bytes of JSON: exactly the limit

    drain()

    row = TaskExecution.objects.get(pk=result.id)
    assert (row.result_data, row.result_reference) == ("x" * 98, None)


@pytest.mark.django_db
def test_a_large_value_goes_to_the_filesystem_and_comes_back(settings, tmp_path):
    use(settings, RESULT_STORAGE_BACKEND="filesystem", RESULT_STORAGE_FILESYSTEM_PATH=str(tmp_path))
    result = tasks.big.enqueue(99)

    drain()

    row = TaskExecution.objects.get(pk=result.id)
    assert row.result_data is None
    assert row.result_reference["location"] == str(tmp_path / result.id / "1.json")
    assert row.result_reference["size"] == 101
    assert default_task_backend.get_result(result.id).return_value == "x" * 99


@pytest.mark.django_db
def test_a_digest_keeps_the_task_successful_but_not_its_value(settings):
    use(settings)  # RESULT_STORAGE_BACKEND defaults to "digest"
    result = tasks.big.enqueue(500)

    drain()

    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    with pytest.raises(ResultDigestOnly, match=r"its JSON encoding is 502 bytes, larger than"):
        _ = fetched.return_value


@pytest.mark.django_db
def test_a_storage_failure_fails_the_attempt(settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    use(settings, RESULT_STORAGE_BACKEND="filesystem", RESULT_STORAGE_FILESYSTEM_PATH=str(blocker))
    result = tasks.big.enqueue(500)  # max_attempts=1

    drain()

    row = TaskExecution.objects.get(pk=result.id)
    assert row.state == "FAILED"
    assert row.errors[0]["exception_class_path"] == "django_ray.results.errors.ResultWriteFailed"
    assert row.result_reference is None


@pytest.mark.ray
@pytest.mark.django_db
def test_ray_core_writes_large_values_to_s3_from_the_ray_worker(
    settings, ray_cluster, ray_connection, s3_server, s3
):
    use(
        settings,
        RESULT_STORAGE_BACKEND="s3",
        RESULT_STORAGE_S3_BUCKET=BUCKET,
        RESULT_STORAGE_S3_ENDPOINT_URL=s3_server.url,
        RESULT_STORAGE_S3_REGION="us-east-1",
        env_vars=dict(s3_server.environ),
    )
    result = tasks.big.enqueue(5000)

    call_command("django_ray_worker", "--ray-core", "--burst", "--address", ray_cluster.address)

    row = TaskExecution.objects.get(pk=result.id)
    key = f"django-ray/results/{result.id}/1.json"
    assert row.result_reference["location"] == f"s3://{BUCKET}/{key}"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b'"' + b"x" * 5000 + b'"'
    assert default_task_backend.get_result(result.id).return_value == "x" * 5000


@pytest.mark.ray
@pytest.mark.django_db(transaction=True)
def test_a_ray_job_writes_large_values_to_gcs(
    settings, ray_cluster, jobs_settings, gcs_server, gcs
):
    env_vars = {**settings.DJANGO_RAY["RAY_RUNTIME_ENV"]["env_vars"], **gcs_server.environ}
    use(
        settings,
        RESULT_STORAGE_BACKEND="gcs",
        RESULT_STORAGE_GCS_BUCKET=BUCKET,
        env_vars=env_vars,
    )
    result = tasks.big.enqueue(3000)

    call_command(
        "django_ray_worker", "--ray-job", "--burst", "--address", ray_cluster.dashboard_url
    )

    row = TaskExecution.objects.get(pk=result.id)
    assert row.result_reference["location"] == (
        f"gs://{BUCKET}/django-ray/results/{result.id}/1.json"
    )
    assert default_task_backend.get_result(result.id).return_value == "x" * 3000
