"""docker/entrypoint.sh: the contract's environment variables become django_ray_worker flags."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from django_ray.management.commands.django_ray_worker import Command, _queues

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
WORKER = ["python", "manage.py", "django_ray_worker"]
# Variables the entrypoint reads; each test starts from none of them.
READ = (
    "DJANGO_RAY_QUEUE",
    "DJANGO_RAY_QUEUES",
    "DJANGO_RAY_CONCURRENCY",
    "DJANGO_RAY_METRICS_PORT",
    "DJANGO_RAY_SKIP_VALIDATION",
    "RAY_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_HEAD_ADDRESS",
    "CELERY_POOL",
    "CELERY_LOG_LEVEL",  # an in-process Celery worker of another test sets it
    "PORT",
)


def entrypoint(*args: str, dry_run: bool = True, **env: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key not in READ}
    if dry_run:
        environ["DJANGO_RAY_ENTRYPOINT_DRY_RUN"] = "1"
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def command(*args: str, **env: str) -> list[str]:
    done = entrypoint(*args, **env)
    assert done.returncode == 0, done.stderr
    return shlex.split(done.stdout)


@pytest.mark.parametrize(
    ("env", "flags"),
    [
        ({}, []),
        ({"DJANGO_RAY_QUEUE": "high"}, ["--queue", "high"]),
        ({"DJANGO_RAY_QUEUES": "high,low"}, ["--queue", "high,low"]),
        ({"DJANGO_RAY_QUEUES": "high,low", "DJANGO_RAY_QUEUE": "default"}, ["--queue", "high,low"]),
        ({"DJANGO_RAY_QUEUES": "", "DJANGO_RAY_QUEUE": "default"}, ["--queue", "default"]),
        ({"DJANGO_RAY_QUEUES": "high, low"}, ["--queue", "high, low"]),
        ({"DJANGO_RAY_CONCURRENCY": "16"}, ["--concurrency", "16"]),
        ({"RAY_ADDRESS": "ray://ray-head:10001"}, ["--address", "ray://ray-head:10001"]),
        ({"RAY_ADDRESS": ""}, []),
        (
            {"DJANGO_RAY_METRICS_PORT": "9100"},
            ["--metrics-port", "9100", "--metrics-address", "0.0.0.0"],
        ),
        (
            {
                "DJANGO_RAY_QUEUES": "a,b",
                "DJANGO_RAY_CONCURRENCY": "4",
                "RAY_ADDRESS": "ray-head:6379",
                "DJANGO_RAY_SKIP_VALIDATION": "1",
            },
            ["--queue", "a,b", "--concurrency", "4", "--address", "ray-head:6379"],
        ),
    ],
)
def test_worker_flags_from_the_environment(env, flags):
    assert command("worker", **env) == [*WORKER, *flags]


def test_arguments_after_the_role_follow_the_mapped_flags():
    assert command("worker", "--ray-job", "--burst", DJANGO_RAY_QUEUE="q") == [
        *WORKER,
        "--queue",
        "q",
        "--ray-job",
        "--burst",
    ]


def test_the_worker_command_accepts_the_mapped_flags_as_documented():
    argv = command(
        "worker",
        DJANGO_RAY_QUEUES="high, low",
        DJANGO_RAY_QUEUE="ignored",
        DJANGO_RAY_CONCURRENCY="16",
        RAY_ADDRESS="ray://ray-head:10001",
    )
    options = Command().create_parser("manage.py", "django_ray_worker").parse_args(argv[3:])

    assert _queues(options.queues, set()) == ["high", "low"]
    assert (options.concurrency, options.address) == (16, "ray://ray-head:10001")


def test_the_command_is_executed_with_the_environment_passed_through(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'exec "$REAL_PYTHON" -c \'import json, os, sys; print(json.dumps({"argv": sys.argv[1:], '
        '"skip": os.environ.get("DJANGO_RAY_SKIP_VALIDATION")}))\' "$@"\n'
    )
    fake.chmod(0o755)

    done = entrypoint(
        "worker",
        dry_run=False,
        PATH=f"{tmp_path}:{os.environ['PATH']}",
        REAL_PYTHON=sys.executable,
        DJANGO_RAY_QUEUE="q",
        DJANGO_RAY_SKIP_VALIDATION="yes",
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "argv": ["manage.py", "django_ray_worker", "--queue", "q"],
        "skip": "yes",
    }


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            (),
            {},
            "gunicorn sample_project.wsgi --bind 0.0.0.0:8000 --workers 2 --access-logfile -",
        ),
        (
            ("web",),
            {"PORT": "9000"},
            "gunicorn sample_project.wsgi --bind 0.0.0.0:9000 --workers 2 --access-logfile -",
        ),
        (("migrate",), {}, "python manage.py migrate --noinput"),
        (("celery-worker",), {}, "celery -A sample_project worker -P prefork -l INFO"),
        (
            ("celery-worker", "-c", "8"),
            {"CELERY_POOL": "django_ray"},
            "celery -A sample_project worker -P django_ray -l INFO -c 8",
        ),
        (
            ("beat",),
            {},
            "celery -A sample_project beat -l INFO --schedule /tmp/celerybeat-schedule",
        ),
        (
            ("manage", "django_ray_status", "--json"),
            {},
            "python manage.py django_ray_status --json",
        ),
        (
            ("ray-head",),
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t"},
            "ray start --head --port=6379 --dashboard-host=0.0.0.0 --dashboard-port=8265 "
            "--disable-usage-stats --block",
        ),
        (
            ("ray-node",),
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t", "RAY_HEAD_ADDRESS": "10.0.0.2:6379"},
            "ray start --address=10.0.0.2:6379 --disable-usage-stats --block",
        ),
        (("bash", "-lc", "echo hi"), {}, "bash -lc 'echo hi'"),
    ],
)
def test_roles(args, env, expected):
    assert command(*args, **env) == shlex.split(expected)


def test_a_token_file_satisfies_token_auth(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret")

    argv = command("ray-node", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))

    assert argv[:2] == ["ray", "start"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {},
            "set RAY_AUTH_MODE=token (or RAY_AUTH_MODE=disabled on a trusted network) "
            "for a Ray node.",
        ),
        (
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/nonexistent/token"},
            "RAY_AUTH_MODE=token needs the token: RAY_AUTH_TOKEN_PATH (a file) or RAY_AUTH_TOKEN.",
        ),
    ],
)
@pytest.mark.parametrize("role", ["ray-head", "ray-node"])
def test_ray_nodes_refuse_to_start_without_token_auth(role, env, message):
    done = entrypoint(role, **env)

    assert (done.returncode, done.stdout) == (64, "")
    assert done.stderr == f"django-ray entrypoint: {message}\n"


def test_token_auth_can_be_disabled_only_by_name():
    assert command("ray-head", RAY_AUTH_MODE="disabled")[:3] == ["ray", "start", "--head"]
