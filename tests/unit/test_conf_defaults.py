"""DJANGO_RAY defaults and the settings object built from them."""

import dataclasses
import pathlib
from typing import Any

import pytest

from django_ray.conf import DEFAULTS, RaySettings
from tests.unit.test_conf import ADDITIONS, CONTRACT, as_dict

# Defaults and the built value


def test_defaults_are_exactly_the_contract_in_its_order_then_our_additions() -> None:
    assert list(DEFAULTS) == list(CONTRACT) + list(ADDITIONS)
    assert dict(DEFAULTS) == CONTRACT | ADDITIONS


def test_empty_mapping_gives_every_default() -> None:
    built = as_dict(RaySettings.from_mapping({}))

    assert built == {
        "ray_address": None,
        "ray_runtime_env": {},
        "runner": "ray_job",
        "default_concurrency": 10,
        "max_task_attempts": 3,
        "retry_backoff_seconds": 60,
        "retry_exception_denylist": (),
        "stuck_task_timeout_seconds": 300,
        "worker_lease_seconds": 60,
        "worker_heartbeat_seconds": 15,
        "max_result_size_bytes": 1048576,
        "result_storage_backend": "digest",
        "result_storage_filesystem_path": None,
        "result_storage_s3_bucket": None,
        "result_storage_s3_prefix": "django-ray/results",
        "result_storage_s3_region": None,
        "result_storage_s3_endpoint_url": None,
        "result_storage_gcs_bucket": None,
        "result_storage_gcs_prefix": "django-ray/results",
        "task_timeout_seconds": None,
        "schedule": {},
        "ray_job_max_running": 32,
        "ray_job_delete_finished": False,
    }


def test_every_field_is_named_after_its_key() -> None:
    names = [f.name for f in dataclasses.fields(RaySettings)]

    assert names == [key.lower() for key in CONTRACT | ADDITIONS]


def test_given_values_are_kept() -> None:
    raw = {
        "RAY_ADDRESS": "ray://ray-head-svc:10001",
        "RAY_RUNTIME_ENV": {"env_vars": {"A": "1"}},
        "RUNNER": "ray_core",
        "DEFAULT_CONCURRENCY": 50,
        "MAX_TASK_ATTEMPTS": 5,
        "RETRY_BACKOFF_SECONDS": 0,
        "RETRY_EXCEPTION_DENYLIST": ["builtins.ValueError", "myapp.errors.PermanentError"],
        "STUCK_TASK_TIMEOUT_SECONDS": 600,
        "WORKER_LEASE_SECONDS": 120,
        "WORKER_HEARTBEAT_SECONDS": 30,
        "MAX_RESULT_SIZE_BYTES": 1,
        "RESULT_STORAGE_BACKEND": "s3",
        "RESULT_STORAGE_S3_BUCKET": "results",
        "RESULT_STORAGE_S3_PREFIX": "",
        "RESULT_STORAGE_S3_REGION": "eu-west-1",
        "RESULT_STORAGE_S3_ENDPOINT_URL": "http://minio:9000",
    }

    built = RaySettings.from_mapping(raw)

    assert built.ray_address == "ray://ray-head-svc:10001"
    assert built.ray_address_kind == "client"
    assert built.ray_runtime_env == {"env_vars": {"A": "1"}}
    assert built.runner == "ray_core"
    assert built.default_concurrency == 50
    assert built.max_task_attempts == 5
    assert built.retry_backoff_seconds == 0
    assert built.retry_exception_denylist == ("builtins.ValueError", "myapp.errors.PermanentError")
    assert built.stuck_task_timeout_seconds == 600
    assert built.worker_lease_seconds == 120
    assert built.worker_heartbeat_seconds == 30
    assert built.max_result_size_bytes == 1
    assert built.result_storage_backend == "s3"
    assert built.result_storage_s3_bucket == "results"
    assert built.result_storage_s3_prefix == ""
    assert built.result_storage_s3_region == "eu-west-1"
    assert built.result_storage_s3_endpoint_url == "http://minio:9000"


def test_settings_are_frozen() -> None:
    built = RaySettings.from_mapping({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        built.runner = "ray_core"  # type: ignore[misc]


def test_mutable_defaults_are_not_shared() -> None:
    first = RaySettings.from_mapping({})
    second = RaySettings.from_mapping({})

    assert first.ray_runtime_env is not second.ray_runtime_env
    assert first.ray_runtime_env is not DEFAULTS["RAY_RUNTIME_ENV"]
    with pytest.raises(TypeError):
        first.ray_runtime_env["pip"] = ["requests"]  # type: ignore[index]
    with pytest.raises(TypeError):
        DEFAULTS["RUNNER"] = "ray_core"  # type: ignore[index]
    assert DEFAULTS["RAY_RUNTIME_ENV"] == {}
    assert DEFAULTS["RETRY_EXCEPTION_DENYLIST"] == []
    assert isinstance(first.retry_exception_denylist, tuple)


def test_later_changes_to_the_given_values_do_not_leak_in() -> None:
    runtime_env: dict[str, Any] = {"env_vars": {"A": "1"}}
    denylist = ["builtins.KeyError"]
    built = RaySettings.from_mapping(
        {"RAY_RUNTIME_ENV": runtime_env, "RETRY_EXCEPTION_DENYLIST": denylist}
    )

    runtime_env["env_vars"]["A"] = "2"
    denylist.append("builtins.OSError")

    assert built.ray_runtime_env == {"env_vars": {"A": "1"}}
    assert built.retry_exception_denylist == ("builtins.KeyError",)


def test_filesystem_path_may_be_a_path_object_and_is_stored_as_str() -> None:
    built = RaySettings.from_mapping(
        {
            "RESULT_STORAGE_BACKEND": "filesystem",
            "RESULT_STORAGE_FILESYSTEM_PATH": pathlib.Path("/var/lib/django-ray"),
        }
    )

    assert built.result_storage_filesystem_path == "/var/lib/django-ray"


def test_denylist_may_be_a_tuple() -> None:
    built = RaySettings.from_mapping({"RETRY_EXCEPTION_DENYLIST": ("builtins.ValueError",)})

    assert built.retry_exception_denylist == ("builtins.ValueError",)


def test_retry_backoff_of_zero_means_retry_at_once_and_is_valid() -> None:
    assert RaySettings.from_mapping({"RETRY_BACKOFF_SECONDS": 0}).retry_backoff_seconds == 0
