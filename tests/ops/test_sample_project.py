"""The sample project, run as its users run it: its own settings, in processes of its own."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_project"
# The sample reads these; the suite's own values must not leak into it.
PREFIXES = ("POSTGRES_", "RAY_", "DJANGO_", "CELERY_")


def sample_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(PREFIXES)}
    return {**env, "RAY_AUTH_MODE": "disabled", **extra}


def manage(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=SAMPLE,
        env=sample_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def database_env() -> dict[str, str]:
    """The sample on the suite's database engine: SQLite, or a PostgreSQL of its own."""
    if connection.vendor == "sqlite":
        return {}
    params = connection.settings_dict
    return {
        "POSTGRES_DB": f"django_ray_sample_{os.getpid()}",
        "POSTGRES_USER": params["USER"],
        "POSTGRES_PASSWORD": params["PASSWORD"],
        "POSTGRES_HOST": params["HOST"],
        "POSTGRES_PORT": str(params["PORT"]),
    }


def test_the_sample_passes_django_checks():
    done = manage("check", "--fail-level", "WARNING")

    assert done.returncode == 0, done.stderr
    assert done.stdout == "System check identified no issues (0 silenced).\n"


def test_behind_tls_the_only_deployment_warnings_are_the_sites_own_hsts_choices():
    done = manage(
        "check",
        "--deploy",
        DJANGO_DEBUG="0",
        DJANGO_HTTPS="1",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
    )

    assert done.returncode == 0, done.stderr
    assert re.findall(r"\(security\.(W\d+)\)", done.stderr) == ["W005", "W021"]


def test_the_samples_own_tests_pass():
    done = manage("test", "demo", "--noinput", timeout=300, **database_env())

    assert done.returncode == 0, done.stdout + done.stderr
    assert "\nOK\n" in done.stderr


def test_the_celery_app_runs_its_tasks_on_a_prefork_worker():
    queue = f"django-ray-ops-{uuid.uuid4().hex[:12]}"
    celery = str(Path(sys.executable).with_name("celery"))
    quiet = ["-l", "WARNING", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    worker = subprocess.Popen(
        [celery, "-A", "sample_project", "worker", "-P", "prefork", "-c", "1", "-Q", queue, *quiet],
        cwd=SAMPLE,
        env=sample_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    client = (
        "from sample_project.celery import add, word_lengths\n"
        f"print(add.apply_async((2, 3), queue={queue!r}).get(timeout=60))\n"
        f"print(word_lengths.apply_async(('to be',), queue={queue!r}).get(timeout=60))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", client],
            cwd=SAMPLE,
            env=sample_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            logs, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            logs, _ = worker.communicate()

    assert done.returncode == 0, done.stderr + logs
    assert done.stdout == "5\n{'to': 2, 'be': 2}\n"


def test_without_django_secret_key_every_process_of_the_checkout_shares_one_key():
    # The dev server's autoreloader starts a fresh process on each change: with a key per
    # process, every reload would log the admin out and fail the tasks already signed.
    show = (
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
    )
    first, second = manage(*show), manage(*show)

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    key = (SAMPLE / ".secret_key").read_text().strip()
    assert len(key) >= 50
    assert first.stdout == second.stdout == f"{key}\n"
