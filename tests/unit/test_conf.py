"""DJANGO_RAY validation messages.

Defaults are pinned in test_conf_defaults.py, start-up in test_conf_startup.py.
"""

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_ray.conf import (
    DjangoRaySettingsError,
    RaySettings,
    classify_ray_address,
    get_settings,
)

CONTRACT: dict[str, Any] = {
    "RAY_ADDRESS": None,
    "RAY_RUNTIME_ENV": {},
    "RUNNER": "ray_job",
    "DEFAULT_CONCURRENCY": 10,
    "MAX_TASK_ATTEMPTS": 3,
    "RETRY_BACKOFF_SECONDS": 60,
    "RETRY_EXCEPTION_DENYLIST": [],
    "STUCK_TASK_TIMEOUT_SECONDS": 300,
    "WORKER_LEASE_SECONDS": 60,
    "WORKER_HEARTBEAT_SECONDS": 15,
    "MAX_RESULT_SIZE_BYTES": 1048576,
    "RESULT_STORAGE_BACKEND": "digest",
    "RESULT_STORAGE_FILESYSTEM_PATH": None,
    "RESULT_STORAGE_S3_BUCKET": None,
    "RESULT_STORAGE_S3_PREFIX": "django-ray/results",
    "RESULT_STORAGE_S3_REGION": None,
    "RESULT_STORAGE_S3_ENDPOINT_URL": None,
    "RESULT_STORAGE_GCS_BUCKET": None,
    "RESULT_STORAGE_GCS_PREFIX": "django-ray/results",
}
# Settings of django-ray's own, after the contract's.
ADDITIONS: dict[str, Any] = {
    "TASK_TIMEOUT_SECONDS": None,
    "SCHEDULE": {},
    "RAY_JOB_MAX_RUNNING": 32,
    "RAY_JOB_DELETE_FINISHED": False,
}

ADDRESS_FORMS = (
    'must be None, "auto", "host:port", "ray://host:port", "http://host:port" or '
    '"https://host:port" (port 1-65535)'
)


@pytest.fixture(autouse=True)
def fresh_settings_cache() -> Iterator[None]:
    # Deleting a setting sends no setting_changed, so no test may leave a stale cache behind.
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def problems_for(raw: Any) -> list[str]:
    with pytest.raises(DjangoRaySettingsError) as caught:
        RaySettings.from_mapping(raw)
    return caught.value.problems


def as_dict(ray_settings: RaySettings) -> dict[str, Any]:
    return {f.name: getattr(ray_settings, f.name) for f in dataclasses.fields(ray_settings)}


# Validation messages


def test_error_is_improperly_configured_with_one_line_per_problem() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        RaySettings.from_mapping({"DEFAULT_CONCURRENCY": 0, "RUNNER": "ray"})

    assert isinstance(caught.value, DjangoRaySettingsError)
    assert str(caught.value) == (
        "Invalid DJANGO_RAY settings:\n"
        '  - DJANGO_RAY["RUNNER"] must be "ray_job" or "ray_core"; got \'ray\'.\n'
        '  - DJANGO_RAY["DEFAULT_CONCURRENCY"] must be a positive integer (>= 1); got 0.'
    )


def test_every_problem_is_reported_at_once_in_contract_order_then_unknown_keys() -> None:
    raw = {
        "MAX_TASK_ATEMPTS": 3,
        "RESULT_STORAGE_BACKEND": "filesystem",
        "WORKER_HEARTBEAT_SECONDS": 90,
        "RETRY_EXCEPTION_DENYLIST": ["ValueError", "myapp.Error", "not a path"],
        "RAY_ADDRESS": "localhost",
        "DEFAULT_CONCURRENCY": True,
    }

    assert problems_for(raw) == [
        f"DJANGO_RAY[\"RAY_ADDRESS\"] {ADDRESS_FORMS}; got 'localhost'.",
        'DJANGO_RAY["DEFAULT_CONCURRENCY"] must be a positive integer (>= 1); got True.',
        'DJANGO_RAY["RETRY_EXCEPTION_DENYLIST"][0] must be a full dotted class path '
        '("module.Class"); got \'ValueError\'; did you mean "builtins.ValueError"?',
        'DJANGO_RAY["RETRY_EXCEPTION_DENYLIST"][2] must be a full dotted class path '
        "(\"module.Class\"); got 'not a path'.",
        'DJANGO_RAY["WORKER_HEARTBEAT_SECONDS"] must be less than '
        'DJANGO_RAY["WORKER_LEASE_SECONDS"] (60); got 90.',
        'DJANGO_RAY["RESULT_STORAGE_FILESYSTEM_PATH"] is required when '
        'RESULT_STORAGE_BACKEND is "filesystem"; got None.',
        'DJANGO_RAY["MAX_TASK_ATEMPTS"] is not a known setting; did you mean "MAX_TASK_ATTEMPTS"?',
    ]


def test_django_ray_must_be_a_mapping() -> None:
    assert problems_for(["RAY_ADDRESS", "auto"]) == [
        "DJANGO_RAY must be a dict of settings; got ['RAY_ADDRESS', 'auto']."
    ]
    assert problems_for(None) == ["DJANGO_RAY must be a dict of settings; got None."]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("MAX_TASK_ATEMPTS", 'did you mean "MAX_TASK_ATTEMPTS"?'),
        ("max_task_attempts", 'did you mean "MAX_TASK_ATTEMPTS"?'),
        ("RAY_ADDR", 'did you mean "RAY_ADDRESS"?'),
        ("QUEUES", None),
    ],
)
def test_unknown_keys_are_named_with_the_nearest_known_key(key: str, expected: str | None) -> None:
    problem = f'DJANGO_RAY["{key}"] is not a known setting'

    assert problems_for({key: 1}) == [f"{problem}; {expected}" if expected else f"{problem}."]


def test_unknown_non_string_key_is_shown_by_repr() -> None:
    assert problems_for({1: "x"}) == ["DJANGO_RAY[1] is not a known setting."]


POSITIVE_INTEGER_KEYS = [
    "DEFAULT_CONCURRENCY",
    "MAX_TASK_ATTEMPTS",
    "STUCK_TASK_TIMEOUT_SECONDS",
    "WORKER_LEASE_SECONDS",
    "WORKER_HEARTBEAT_SECONDS",
    "MAX_RESULT_SIZE_BYTES",
    "RAY_JOB_MAX_RUNNING",
]


@pytest.mark.parametrize("key", POSITIVE_INTEGER_KEYS)
@pytest.mark.parametrize(
    ("value", "shown"), [(0, "0"), (-1, "-1"), (True, "True"), ("10", "'10'"), (1.5, "1.5")]
)
def test_counts_and_durations_must_be_positive_integers(key: str, value: Any, shown: str) -> None:
    raw = {key: value}
    if key == "WORKER_LEASE_SECONDS":
        raw["WORKER_HEARTBEAT_SECONDS"] = 1  # keep the heartbeat rule out of the way

    assert problems_for(raw) == [
        f'DJANGO_RAY["{key}"] must be a positive integer (>= 1); got {shown}.'
    ]


@pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), (False, "False"), ("60", "'60'")])
def test_retry_backoff_must_be_a_non_negative_integer(value: Any, shown: str) -> None:
    assert problems_for({"RETRY_BACKOFF_SECONDS": value}) == [
        f'DJANGO_RAY["RETRY_BACKOFF_SECONDS"] must be a non-negative integer (>= 0); got {shown}.'
    ]


@pytest.mark.parametrize(("value", "shown"), [(1, "1"), ("yes", "'yes'"), (None, "None")])
def test_deleting_finished_jobs_is_true_or_false(value: Any, shown: str) -> None:
    assert problems_for({"RAY_JOB_DELETE_FINISHED": value}) == [
        f'DJANGO_RAY["RAY_JOB_DELETE_FINISHED"] must be True or False; got {shown}.'
    ]


def test_runner_must_be_one_of_the_runners() -> None:
    assert problems_for({"RUNNER": "ray_jobs"}) == [
        'DJANGO_RAY["RUNNER"] must be "ray_job" or "ray_core"; got \'ray_jobs\'.'
    ]


def test_result_storage_backend_must_be_a_known_backend() -> None:
    assert problems_for({"RESULT_STORAGE_BACKEND": "azure"}) == [
        'DJANGO_RAY["RESULT_STORAGE_BACKEND"] must be "digest", "filesystem", "s3" or "gcs"; '
        "got 'azure'."
    ]


def test_runtime_env_must_be_a_dict() -> None:
    assert problems_for({"RAY_RUNTIME_ENV": [("pip", ["x"])]}) == [
        "DJANGO_RAY[\"RAY_RUNTIME_ENV\"] must be a dict (a Ray runtime_env); got [('pip', ['x'])]."
    ]


@pytest.mark.parametrize("key", ["RESULT_STORAGE_S3_PREFIX", "RESULT_STORAGE_GCS_PREFIX"])
def test_prefixes_must_be_strings(key: str) -> None:
    assert problems_for({key: None}) == [f'DJANGO_RAY["{key}"] must be a string; got None.']


@pytest.mark.parametrize(
    "key",
    [
        "RESULT_STORAGE_S3_BUCKET",
        "RESULT_STORAGE_S3_REGION",
        "RESULT_STORAGE_S3_ENDPOINT_URL",
        "RESULT_STORAGE_GCS_BUCKET",
    ],
)
def test_optional_strings_accept_none_and_reject_other_types(key: str) -> None:
    assert getattr(RaySettings.from_mapping({key: None}), key.lower()) is None
    assert problems_for({key: 5}) == [f'DJANGO_RAY["{key}"] must be a string or None; got 5.']


def test_filesystem_path_must_be_a_path_or_none() -> None:
    assert problems_for({"RESULT_STORAGE_FILESYSTEM_PATH": 5}) == [
        'DJANGO_RAY["RESULT_STORAGE_FILESYSTEM_PATH"] must be a path (str or os.PathLike) '
        "or None; got 5."
    ]


def test_denylist_must_be_a_list_of_strings() -> None:
    expected = (
        'DJANGO_RAY["RETRY_EXCEPTION_DENYLIST"] must be a list of exception class paths (str)'
    )

    assert problems_for({"RETRY_EXCEPTION_DENYLIST": "builtins.ValueError"}) == [
        f"{expected}; got 'builtins.ValueError'."
    ]
    assert problems_for({"RETRY_EXCEPTION_DENYLIST": [ValueError]}) == [
        f"{expected}; got [<class 'ValueError'>]."
    ]


@pytest.mark.parametrize(
    ("entry", "suggestion"),
    [
        ("ValueError", '; did you mean "builtins.ValueError"?'),
        ("TimeoutError", '; did you mean "builtins.TimeoutError"?'),
        ("PermanentError", "."),
        ("print", "."),
        ("myapp.", "."),
        (".Error", "."),
        ("myapp.errors.Not-Allowed", "."),
        ("myapp.class.Error", "."),
        ("", "."),
    ],
)
def test_denylist_entries_must_be_full_dotted_class_paths(entry: str, suggestion: str) -> None:
    assert problems_for({"RETRY_EXCEPTION_DENYLIST": ["builtins.KeyError", entry]}) == [
        'DJANGO_RAY["RETRY_EXCEPTION_DENYLIST"][1] must be a full dotted class path '
        f'("module.Class"); got {entry!r}{suggestion}'
    ]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        (None, "local"),
        ("auto", "auto"),
        ("127.0.0.1:6379", "gcs"),
        ("ray-head:6379", "gcs"),
        ("[::1]:6379", "gcs"),
        ("ray://ray-head-svc:10001", "client"),
        ("ray://10.0.0.5:1", "client"),
        ("ray://[2001:db8::1]:10001", "client"),
        ("http://127.0.0.1:8265", "jobs"),
        ("https://ray.example.com:65535", "jobs"),
    ],
)
def test_ray_address_forms_are_accepted_and_classified(address: str | None, kind: str) -> None:
    assert RaySettings.from_mapping({"RAY_ADDRESS": address}).ray_address == address
    assert classify_ray_address(address) == kind


@pytest.mark.parametrize(
    "address",
    [
        "",
        "localhost",
        "AUTO",
        "ray://host",
        "ray://:10001",
        "tcp://h:1",
        "h:99999",
        "h:0",
        "h:port",
        "::1:6379",
        "[not-ipv6]:6379",
        "http://h:8265/",
        "ray://ray://h:1",
        "://h:1",
        "-bad-:1",
    ],
)
def test_other_ray_addresses_are_rejected(address: str) -> None:
    assert problems_for({"RAY_ADDRESS": address}) == [
        f'DJANGO_RAY["RAY_ADDRESS"] {ADDRESS_FORMS}; got {address!r}.'
    ]
    with pytest.raises(ValueError, match="is not a Ray address of a known form"):
        classify_ray_address(address)


def test_ray_address_must_be_a_string() -> None:
    assert problems_for({"RAY_ADDRESS": 6379}) == [
        f'DJANGO_RAY["RAY_ADDRESS"] {ADDRESS_FORMS}; got 6379.'
    ]


@pytest.mark.parametrize(("heartbeat", "lease"), [(60, 60), (61, 60), (15, 10)])
def test_heartbeat_must_be_below_the_lease(heartbeat: int, lease: int) -> None:
    raw = {"WORKER_HEARTBEAT_SECONDS": heartbeat, "WORKER_LEASE_SECONDS": lease}

    assert problems_for(raw) == [
        'DJANGO_RAY["WORKER_HEARTBEAT_SECONDS"] must be less than '
        f'DJANGO_RAY["WORKER_LEASE_SECONDS"] ({lease}); got {heartbeat}.'
    ]


def test_heartbeat_rule_waits_for_both_values_to_be_valid() -> None:
    assert problems_for({"WORKER_LEASE_SECONDS": "60", "WORKER_HEARTBEAT_SECONDS": 90}) == [
        "DJANGO_RAY[\"WORKER_LEASE_SECONDS\"] must be a positive integer (>= 1); got '60'."
    ]


@pytest.mark.parametrize(
    ("backend", "key"),
    [
        ("filesystem", "RESULT_STORAGE_FILESYSTEM_PATH"),
        ("s3", "RESULT_STORAGE_S3_BUCKET"),
        ("gcs", "RESULT_STORAGE_GCS_BUCKET"),
    ],
)
@pytest.mark.parametrize(("value", "shown"), [(None, "None"), ("", "''")])
def test_storage_backends_require_their_location(
    backend: str, key: str, value: str | None, shown: str
) -> None:
    raw = {"RESULT_STORAGE_BACKEND": backend, key: value}

    assert problems_for(raw) == [
        f'DJANGO_RAY["{key}"] is required when RESULT_STORAGE_BACKEND is "{backend}"; got {shown}.'
    ]


def test_filesystem_path_must_be_absolute() -> None:
    raw = {"RESULT_STORAGE_BACKEND": "filesystem", "RESULT_STORAGE_FILESYSTEM_PATH": "results"}

    assert problems_for(raw) == [
        'DJANGO_RAY["RESULT_STORAGE_FILESYSTEM_PATH"] must be an absolute path when '
        "RESULT_STORAGE_BACKEND is \"filesystem\"; got 'results'."
    ]


def test_locations_of_unused_backends_are_not_required() -> None:
    built = RaySettings.from_mapping(
        {"RESULT_STORAGE_BACKEND": "gcs", "RESULT_STORAGE_GCS_BUCKET": "b"}
    )

    assert built.result_storage_s3_bucket is None
    assert built.result_storage_filesystem_path is None


def test_an_object_store_backend_without_its_library_fails_validation(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "boto3" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    with pytest.raises(DjangoRaySettingsError) as caught:
        RaySettings.from_mapping(
            {"RESULT_STORAGE_BACKEND": "s3", "RESULT_STORAGE_S3_BUCKET": "results"}
        )

    assert caught.value.problems == [
        'DJANGO_RAY["RESULT_STORAGE_BACKEND"] is "s3", but boto3 is not installed; '
        'run: pip install boto3 (django-ray\'s "s3" extra).'
    ]


def test_max_task_attempts_has_a_documented_maximum():
    from django_ray.conf import DjangoRaySettingsError, RaySettings

    with pytest.raises(DjangoRaySettingsError) as raised:
        RaySettings.from_mapping({"MAX_TASK_ATTEMPTS": 101})
    assert raised.value.problems == [
        'DJANGO_RAY["MAX_TASK_ATTEMPTS"] must be at most 100 (django-ray\'s maximum); got 101.'
    ]
    assert RaySettings.from_mapping({"MAX_TASK_ATTEMPTS": 100}).max_task_attempts == 100
