"""The ``DJANGO_RAY`` setting: its defaults, its validation and its cached, typed form.

Every default lives in :data:`DEFAULTS`. :meth:`RaySettings.from_mapping` checks a raw
mapping and reports every problem in one :class:`DjangoRaySettingsError`;
:func:`get_settings` returns the validated settings of the running project.
"""

import copy
import difflib
import functools
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, NoneType
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_ray import checks
from django_ray.addresses import RayAddressKind, classify_ray_address
from django_ray.results.libraries import missing_library_problem
from django_ray.retry import MAX_ATTEMPTS
from django_ray.scheduling.entries import problems as schedule_problems
from django_ray.scheduling.entries import task_problems as schedule_task_problems

# Key order is the contract's order; problems are reported in it.
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
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
        # Beyond the contract: django-ray's own.
        "TASK_TIMEOUT_SECONDS": None,
        "SCHEDULE": {},
        "RAY_JOB_MAX_RUNNING": 32,
        "RAY_JOB_DELETE_FINISHED": False,
    }
)
"""Every ``DJANGO_RAY`` key and its default; the only place a default is written."""

RUNNERS = ("ray_job", "ray_core")
RESULT_STORAGE_BACKENDS = ("digest", "filesystem", "s3", "gcs")
SKIP_VALIDATION_COMMANDS = frozenset(
    {"migrate", "makemigrations", "showmigrations", "collectstatic"}
)
SKIP_VALIDATION_ENV = "DJANGO_RAY_SKIP_VALIDATION"
_SKIP_VALUES = frozenset({"1", "true", "yes"})


class DjangoRaySettingsError(ImproperlyConfigured):
    """``DJANGO_RAY`` is invalid; ``problems`` holds one sentence per problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__(
            "Invalid DJANGO_RAY settings:" + "".join(f"\n  - {p}" for p in self.problems)
        )


def _name(key: object) -> str:
    return f'DJANGO_RAY["{key}"]' if isinstance(key, str) else f"DJANGO_RAY[{key!r}]"


_text = checks.of_type((str,), "a string")
_optional_text = checks.of_type((str, NoneType), "a string or None")
_CHECKS: Mapping[str, checks.Check] = {
    "RAY_ADDRESS": checks.ray_address,
    "RAY_RUNTIME_ENV": checks.of_type((dict,), "a dict (a Ray runtime_env)"),
    "RUNNER": checks.one_of(RUNNERS),
    "DEFAULT_CONCURRENCY": checks.integer_at_least(1, "positive"),
    "MAX_TASK_ATTEMPTS": checks.integer_between(1, MAX_ATTEMPTS, "positive"),
    # 0 is allowed: retry at once, with no backoff.
    "RETRY_BACKOFF_SECONDS": checks.integer_at_least(0, "non-negative"),
    "RETRY_EXCEPTION_DENYLIST": checks.denylist,
    "STUCK_TASK_TIMEOUT_SECONDS": checks.integer_at_least(1, "positive"),
    "WORKER_LEASE_SECONDS": checks.integer_at_least(1, "positive"),
    "WORKER_HEARTBEAT_SECONDS": checks.integer_at_least(1, "positive"),
    "MAX_RESULT_SIZE_BYTES": checks.integer_at_least(1, "positive"),
    "RESULT_STORAGE_BACKEND": checks.one_of(RESULT_STORAGE_BACKENDS),
    "RESULT_STORAGE_FILESYSTEM_PATH": checks.of_type(
        (str, os.PathLike, NoneType), "a path (str or os.PathLike) or None"
    ),
    "RESULT_STORAGE_S3_BUCKET": _optional_text,
    "RESULT_STORAGE_S3_PREFIX": _text,
    "RESULT_STORAGE_S3_REGION": _optional_text,
    "RESULT_STORAGE_S3_ENDPOINT_URL": _optional_text,
    "RESULT_STORAGE_GCS_BUCKET": _optional_text,
    "RESULT_STORAGE_GCS_PREFIX": _text,
    "TASK_TIMEOUT_SECONDS": checks.optional(checks.integer_at_least(1, "positive")),
    "SCHEDULE": lambda value: None,  # entry by entry, in _problems()
    "RAY_JOB_MAX_RUNNING": checks.integer_at_least(1, "positive"),
    "RAY_JOB_DELETE_FINISHED": checks.of_type((bool,), "True or False"),
}
_LOCATION_KEYS = {
    "filesystem": "RESULT_STORAGE_FILESYSTEM_PATH",
    "s3": "RESULT_STORAGE_S3_BUCKET",
    "gcs": "RESULT_STORAGE_GCS_BUCKET",
}


def _cross_problems(values: Mapping[str, Any]) -> dict[str, str]:
    """Problems between settings, keyed by the setting to fix; ``values`` holds only valid ones."""
    found: dict[str, str] = {}
    lease, heartbeat = values.get("WORKER_LEASE_SECONDS"), values.get("WORKER_HEARTBEAT_SECONDS")
    if lease is not None and heartbeat is not None and heartbeat >= lease:
        found["WORKER_HEARTBEAT_SECONDS"] = (
            f'must be less than DJANGO_RAY["WORKER_LEASE_SECONDS"] ({lease}); got {heartbeat!r}.'
        )
    backend: str = values.get("RESULT_STORAGE_BACKEND", "")
    if problem := missing_library_problem(backend):
        found["RESULT_STORAGE_BACKEND"] = problem
    required = _LOCATION_KEYS.get(backend)
    if required is not None and required in values:
        value = values[required]
        when = f'when RESULT_STORAGE_BACKEND is "{backend}"'
        if value is None or os.fspath(value) == "":
            found[required] = f"is required {when}; got {value!r}."
        elif backend == "filesystem" and not os.path.isabs(value):
            found[required] = f"must be an absolute path {when}; got {value!r}."
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class RaySettings:
    """Validated ``DJANGO_RAY``: one field per key, named as the key in lower case.

    Build it with :meth:`from_mapping`; defaults come from :data:`DEFAULTS`.
    ``ray_runtime_env`` is a private read-only copy; Ray wants a dict, so hand it
    ``copy.deepcopy(dict(settings.ray_runtime_env))``.
    """

    ray_address: str | None
    ray_runtime_env: Mapping[str, Any]
    runner: str
    default_concurrency: int
    max_task_attempts: int
    retry_backoff_seconds: int
    retry_exception_denylist: tuple[str, ...]
    stuck_task_timeout_seconds: int
    worker_lease_seconds: int
    worker_heartbeat_seconds: int
    max_result_size_bytes: int
    result_storage_backend: str
    result_storage_filesystem_path: str | None
    result_storage_s3_bucket: str | None
    result_storage_s3_prefix: str
    result_storage_s3_region: str | None
    result_storage_s3_endpoint_url: str | None
    result_storage_gcs_bucket: str | None
    result_storage_gcs_prefix: str
    task_timeout_seconds: int | None
    schedule: Mapping[str, Mapping[str, Any]]
    ray_job_max_running: int
    ray_job_delete_finished: bool

    @property
    def ray_address_kind(self) -> RayAddressKind:
        """How :attr:`ray_address` reaches Ray; see :func:`classify_ray_address`."""
        return classify_ray_address(self.ray_address)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "RaySettings":
        """Validate ``raw`` (the ``DJANGO_RAY`` value) over :data:`DEFAULTS` and build settings.

        Raises :class:`DjangoRaySettingsError` listing every problem found.
        """
        if not isinstance(raw, Mapping):
            raise DjangoRaySettingsError([f"DJANGO_RAY must be a dict of settings; got {raw!r}."])
        merged = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}
        if report := _problems(raw, merged):
            raise DjangoRaySettingsError(report)
        path = merged["RESULT_STORAGE_FILESYSTEM_PATH"]
        # Copies, so neither the project's settings nor DEFAULTS share state with an instance.
        merged["RAY_RUNTIME_ENV"] = MappingProxyType(copy.deepcopy(merged["RAY_RUNTIME_ENV"]))
        merged["RETRY_EXCEPTION_DENYLIST"] = tuple(merged["RETRY_EXCEPTION_DENYLIST"])
        merged["SCHEDULE"] = MappingProxyType(copy.deepcopy(dict(merged["SCHEDULE"])))
        merged["RESULT_STORAGE_FILESYSTEM_PATH"] = None if path is None else os.fspath(path)
        return cls(**{key.lower(): value for key, value in merged.items()})


def _problems(raw: Mapping[Any, Any], merged: Mapping[str, Any]) -> list[str]:
    """Every problem, in the contract's key order, then one per unknown key in ``raw``."""
    problems: dict[str, list[str]] = {key: [] for key in DEFAULTS}
    for key in DEFAULTS:
        if problem := _CHECKS[key](merged[key]):
            problems[key].append(f"{_name(key)} {problem}")
    denylist = "RETRY_EXCEPTION_DENYLIST"
    if not problems[denylist]:
        for index, entry in enumerate(merged[denylist]):
            if problem := checks.denylist_entry(entry):
                problems[denylist].append(f"{_name(denylist)}[{index}] {problem}")
    problems["SCHEDULE"] += schedule_problems(merged["SCHEDULE"])
    valid = {key: value for key, value in merged.items() if not problems[key]}
    for key, problem in _cross_problems(valid).items():
        problems[key].append(f"{_name(key)} {problem}")
    report = [problem for found in problems.values() for problem in found]
    return report + [_unknown_key_problem(key) for key in raw if key not in DEFAULTS]


def _unknown_key_problem(key: object) -> str:
    problem = f"{_name(key)} is not a known setting"
    if isinstance(key, str):
        matches = difflib.get_close_matches(key.upper(), DEFAULTS, n=1)
        if matches:
            return f'{problem}; did you mean "{matches[0]}"?'
    return f"{problem}."


@functools.cache
def get_settings() -> RaySettings:
    """The project's validated ``DJANGO_RAY`` (absent means ``{}``), built once and cached.

    The cache is dropped whenever ``DJANGO_RAY`` changes (``override_settings``).
    """
    return RaySettings.from_mapping(getattr(settings, "DJANGO_RAY", {}))


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "DJANGO_RAY":
        get_settings.cache_clear()


def validation_skipped(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether startup validation is skipped: for a maintenance command or by the environment.

    Django takes the command from ``argv[1]`` for ``manage.py``, ``django-admin`` and
    ``python -m django`` alike (``argv[0]`` is then ``.../django/__main__.py``), so we do too.
    """
    if environ.get(SKIP_VALIDATION_ENV, "").strip().lower() in _SKIP_VALUES:
        return True
    return len(argv) > 1 and argv[1] in SKIP_VALIDATION_COMMANDS


def validate_on_startup(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> RaySettings | None:
    """Validate ``DJANGO_RAY`` at startup (``AppConfig.ready``); None when validation is skipped.

    ``argv`` and ``environ`` default to ``sys.argv`` and ``os.environ``.
    """
    if validation_skipped(
        sys.argv if argv is None else argv, os.environ if environ is None else environ
    ):
        return None
    validated = get_settings()
    if problems := schedule_task_problems(validated.schedule):  # imports them: apps are ready
        raise DjangoRaySettingsError(problems)
    return validated
