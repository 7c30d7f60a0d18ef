"""DJANGO_RAY at start-up: the cached settings, the setting_changed receiver and the skip rules."""

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

from django_ray.conf import (
    DjangoRaySettingsError,
    RaySettings,
    get_settings,
    validate_on_startup,
    validation_skipped,
)


@pytest.fixture(autouse=True)
def fresh_settings_cache() -> Iterator[None]:
    # Deleting a setting sends no setting_changed, so no test may leave a stale cache behind.
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# get_settings and the setting_changed receiver


def test_get_settings_reads_django_ray_and_is_cached() -> None:
    with override_settings(DJANGO_RAY={"DEFAULT_CONCURRENCY": 7}):
        assert get_settings().default_concurrency == 7
        assert get_settings() is get_settings()


def test_missing_django_ray_means_defaults() -> None:
    with override_settings():
        del settings.DJANGO_RAY
        assert get_settings() == RaySettings.from_mapping({})


def test_override_settings_rebuilds_and_restores() -> None:
    with override_settings(DJANGO_RAY={"RUNNER": "ray_core"}):
        outer = get_settings()
        with override_settings(DJANGO_RAY={"RUNNER": "ray_job", "MAX_TASK_ATTEMPTS": 1}):
            inner = get_settings()
        assert get_settings() is not inner
        assert get_settings() == outer

    assert (outer.runner, inner.runner, inner.max_task_attempts) == ("ray_core", "ray_job", 1)


def test_other_setting_changes_keep_the_cache() -> None:
    with override_settings(DJANGO_RAY={}):
        cached = get_settings()
        with override_settings(USE_TZ=not settings.USE_TZ):
            assert get_settings() is cached


def test_get_settings_raises_for_invalid_settings_every_time() -> None:
    with override_settings(DJANGO_RAY={"DEFAULT_CONCURRENCY": 0}):
        for _ in range(2):
            with pytest.raises(DjangoRaySettingsError):
                get_settings()


# Startup validation and its skip rules


@pytest.mark.parametrize(
    "command", ["migrate", "makemigrations", "showmigrations", "collectstatic"]
)
@pytest.mark.parametrize(
    "program",
    [
        "manage.py",
        "/srv/app/manage.py",
        "/venv/bin/django-admin",
        # `python -m django X`: runpy has replaced "-m" with the module's path by then.
        "/venv/lib/python3.12/site-packages/django/__main__.py",
    ],
)
def test_maintenance_commands_skip_validation(program: str, command: str) -> None:
    assert validation_skipped([program, command, "--noinput"], {}) is True


@pytest.mark.parametrize(
    "argv",
    [
        ["manage.py", "runserver"],
        ["manage.py", "django_ray_worker", "--queue", "default"],
        ["manage.py", "test"],
        ["manage.py", "help", "migrate"],
        ["manage.py"],
        ["gunicorn", "project.wsgi"],
        [],
    ],
)
def test_other_commands_do_not_skip_validation(argv: list[str]) -> None:
    assert validation_skipped(argv, {}) is False


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", " yes ", "True\n"])
def test_environment_variable_skips_validation(value: str) -> None:
    environ = {"DJANGO_RAY_SKIP_VALIDATION": value}

    assert validation_skipped(["manage.py", "runserver"], environ) is True


@pytest.mark.parametrize("value", ["0", "no", "", "false", "on", "y"])
def test_other_environment_values_do_not_skip_validation(value: str) -> None:
    environ = {"DJANGO_RAY_SKIP_VALIDATION": value}

    assert validation_skipped(["manage.py", "runserver"], environ) is False


def test_validate_on_startup_returns_the_settings() -> None:
    with override_settings(DJANGO_RAY={"RAY_ADDRESS": "auto"}):
        validated = validate_on_startup(["manage.py", "runserver"], {})

    assert validated is not None
    assert validated.ray_address == "auto"


def test_validate_on_startup_raises_for_invalid_settings() -> None:
    with (
        override_settings(DJANGO_RAY={"RUNNER": "celery"}),
        pytest.raises(DjangoRaySettingsError) as caught,
    ):
        validate_on_startup(["manage.py", "django_ray_worker"], {})

    assert caught.value.problems == [
        'DJANGO_RAY["RUNNER"] must be "ray_job" or "ray_core"; got \'celery\'.'
    ]


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["manage.py", "migrate"], {}),
        (["manage.py", "runserver"], {"DJANGO_RAY_SKIP_VALIDATION": "1"}),
    ],
)
def test_validate_on_startup_skips_even_invalid_settings(
    argv: list[str], environ: dict[str, str]
) -> None:
    with override_settings(DJANGO_RAY={"RUNNER": "celery"}):
        assert validate_on_startup(argv, environ) is None


def test_validate_on_startup_defaults_to_the_process_argv_and_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["manage.py", "runserver"])
    monkeypatch.setenv("DJANGO_RAY_SKIP_VALIDATION", "yes")

    with override_settings(DJANGO_RAY={"RUNNER": "celery"}):
        assert validate_on_startup() is None
