"""Start-up behaviour of a real Django process: validation at ready(), migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def manage(tmp_path):
    """Run ``python -m django ARGS`` with the broken settings, in a fresh process."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {
            key: value for key, value in os.environ.items() if key != "DJANGO_RAY_SKIP_VALIDATION"
        }
        environ |= {
            "DJANGO_SETTINGS_MODULE": "tests.settings_invalid",
            "DJANGO_RAY_TEST_DATABASE": "sqlite",
            "DJANGO_RAY_TEST_SQLITE_PATH": str(tmp_path / "startup.sqlite3"),
            **env,
        }
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_invalid_settings_stop_a_management_command_at_startup(manage):
    completed = manage("check")

    assert completed.returncode == 1
    assert completed.stderr.rstrip().endswith(
        "django_ray.conf.DjangoRaySettingsError: Invalid DJANGO_RAY settings:\n"
        '  - DJANGO_RAY["RUNNER"] must be "ray_job" or "ray_core"; got \'ray\'.\n'
        '  - DJANGO_RAY["WORKER_HEARTBEAT_SECONDS"] must be a positive integer (>= 1); got 0.\n'
        '  - DJANGO_RAY["MAX_TASK_ATEMPTS"] is not a known setting; '
        'did you mean "MAX_TASK_ATTEMPTS"?'
    )


@pytest.mark.parametrize("command", ["showmigrations", "makemigrations --check --dry-run"])
def test_maintenance_commands_skip_validation(manage, command):
    completed = manage(*command.split())

    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("value", ["1", "TRUE", "yes"])
def test_the_environment_switch_skips_validation(manage, value):
    completed = manage("check", DJANGO_RAY_SKIP_VALIDATION=value)

    assert completed.returncode == 0, completed.stderr
    assert "System check identified no issues" in completed.stdout


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = StringIO()

    call_command("makemigrations", "django_ray", "--check", "--dry-run", stdout=out)

    assert out.getvalue().strip() == "No changes detected in app 'django_ray'"
