"""django_ray_doctor: each check against the real database and real loopback sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from django_ray.operations.doctor import Level, check_ray

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
RAY_VERSION = metadata.version("ray")


def doctor(**django_ray):
    """Run the doctor under DJANGO_RAY=django_ray; return its lines and its CommandError."""
    out = StringIO()
    with override_settings(DJANGO_RAY=django_ray):
        try:
            call_command("django_ray_doctor", "--timeout", "1", stdout=out)
        except CommandError as error:
            return out.getvalue().splitlines(), error
    return out.getvalue().splitlines(), None


def ok_lines():
    return [
        "OK    settings    DJANGO_RAY is valid.",
        f"OK    database    database 'default' ({connection.vendor}) answers.",
        "OK    migrations  every django_ray migration is applied.",
        "OK    ray         RAY_ADDRESS is None: each worker starts an embedded local Ray "
        "(development).",
        'OK    storage     RESULT_STORAGE_BACKEND is "digest": oversized results keep only a '
        "digest pointer.",
    ]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (and nothing more)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def jobs_api() -> Iterator[dict[str, Any]]:
    """A loopback HTTP server answering /api/version as the Ray dashboard does."""
    answer: dict[str, object] = {"version": "4", "ray_version": RAY_VERSION, "ray_commit": "x"}
    served = {"path": "/api/version"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == served["path"]
            body = json.dumps(answer).encode() if found else b"not found"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield {"address": address, "answer": answer, "served": served}
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_healthy_embedded_setup_passes_every_check():
    lines, error = doctor(RUNNER="ray_core")

    assert lines == [*ok_lines(), "5 checks: 5 OK, 0 WARN, 0 FAIL."]
    assert error is None


def test_an_unreachable_gcs_fails_with_a_hint_and_exit_status_1():
    lines, error = doctor(RAY_ADDRESS="127.0.0.1:1")

    assert lines[3:] == [
        "FAIL  ray         cannot reach the Ray GCS at 127.0.0.1:1: [Errno 111] Connection refused",
        "                  hint: start the Ray head with `ray start --head --port=1` there, or fix "
        'DJANGO_RAY["RAY_ADDRESS"].',
        ok_lines()[4],
        "5 checks: 4 OK, 0 WARN, 1 FAIL.",
    ]
    assert error is not None
    assert (error.returncode, str(error)) == (1, "1 check(s) failed.")


def test_with_the_setting_unset_the_environments_address_is_checked(listening_port, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{listening_port}")

    lines, error = doctor(RUNNER="ray_core")

    assert lines[3] == (
        f"OK    ray         the Ray GCS at 127.0.0.1:{listening_port} accepts connections. The "
        'address comes from the RAY_ADDRESS environment variable, as DJANGO_RAY["RAY_ADDRESS"] '
        "is unset."
    )
    assert error is None


def test_a_listening_gcs_port_passes(listening_port):
    check = check_ray(f"127.0.0.1:{listening_port}", timeout=1)

    assert (check.level, check.detail) == (
        Level.OK,
        f"the Ray GCS at 127.0.0.1:{listening_port} accepts connections.",
    )


def test_an_unreachable_ray_client_server_fails(closed_port):
    check = check_ray(f"ray://127.0.0.1:{closed_port}", timeout=1)

    assert (check.level, check.detail, check.hint) == (
        Level.FAIL,
        f"cannot reach the Ray Client server at ray://127.0.0.1:{closed_port}: "
        "[Errno 111] Connection refused",
        f"start the Ray head with `ray start --head --ray-client-server-port={closed_port}` "
        'there, or fix DJANGO_RAY["RAY_ADDRESS"].',
    )


def test_the_jobs_api_is_asked_for_its_version(jobs_api):
    address = jobs_api["address"]

    assert check_ray(address, timeout=1).detail == (
        f"the Ray Jobs API at {address} answers (Ray {RAY_VERSION})."
    )

    jobs_api["answer"]["ray_version"] = "1.0.0"
    mismatch = check_ray(address, timeout=1)
    assert (mismatch.level, mismatch.detail, mismatch.hint) == (
        Level.WARN,
        f"the Ray Jobs API at {address} runs Ray 1.0.0; this machine has Ray {RAY_VERSION}.",
        "install ray==1.0.0 here; Ray needs the same version on both sides.",
    )


def test_a_missing_jobs_api_fails(jobs_api, closed_port):
    jobs_api["served"]["path"] = "/elsewhere"
    not_found = check_ray(jobs_api["address"], timeout=1)
    refused = check_ray(f"http://127.0.0.1:{closed_port}", timeout=1)

    assert (not_found.level, not_found.detail) == (
        Level.FAIL,
        f"no Ray Jobs API at {jobs_api['address']}/api/version: HTTP Error 404: Not Found",
    )
    assert (refused.level, refused.detail) == (
        Level.FAIL,
        f"no Ray Jobs API at http://127.0.0.1:{closed_port}/api/version: "
        "[Errno 111] Connection refused",
    )


def test_auto_is_a_warning_not_checked_from_here():
    check = check_ray("auto", timeout=1)

    assert (check.level, check.hint) == (
        Level.WARN,
        "run `ray status` on the worker's machine to see that cluster.",
    )


def test_filesystem_storage_must_be_a_writable_directory(tmp_path):
    lines, error = doctor(
        RESULT_STORAGE_BACKEND="filesystem", RESULT_STORAGE_FILESYSTEM_PATH=str(tmp_path)
    )
    assert lines[4] == f"OK    storage     {tmp_path} is a writable directory."
    assert error is None
    assert list(tmp_path.iterdir()) == []

    missing = tmp_path / "missing"
    lines, error = doctor(
        RESULT_STORAGE_BACKEND="filesystem", RESULT_STORAGE_FILESYSTEM_PATH=str(missing)
    )
    assert lines[4:6] == [
        f"FAIL  storage     {missing} is not a directory.",
        "                  hint: create the directory, writable by the worker's user, on every "
        "machine that runs workers or reads results (a shared volume), or fix "
        'DJANGO_RAY["RESULT_STORAGE_FILESYSTEM_PATH"].',
    ]
    assert error is not None


def test_object_storage_is_not_checked_yet():
    lines, error = doctor(RESULT_STORAGE_BACKEND="s3", RESULT_STORAGE_S3_BUCKET="results")

    assert lines[4:] == [
        "WARN  storage     RESULT_STORAGE_BACKEND is \"s3\" (bucket 'results'): not checked yet.",
        "                  hint: make sure workers and web processes have credentials to read "
        "and write that bucket.",
        "5 checks: 4 OK, 1 WARN, 0 FAIL.",
    ]
    assert error is None


def test_unapplied_migrations_fail():
    recorder = MigrationRecorder(connection)
    latest = max(name for app, name in recorder.applied_migrations() if app == "django_ray")
    recorder.record_unapplied("django_ray", latest)

    lines, error = doctor()

    assert lines[2:4] == [
        f"FAIL  migrations  1 migration(s) not applied: django_ray.{latest}.",
        "                  hint: run: manage.py migrate",
    ]
    assert error is not None


def test_invalid_settings_fail_and_skip_the_checks_that_need_them():
    lines, error = doctor(RUNNER="ray", MAX_TASK_ATEMPTS=3)

    assert lines == [
        "FAIL  settings    DJANGO_RAY is invalid:",
        '                  - DJANGO_RAY["RUNNER"] must be "ray_job" or "ray_core"; got \'ray\'.',
        '                  - DJANGO_RAY["MAX_TASK_ATEMPTS"] is not a known setting; '
        'did you mean "MAX_TASK_ATTEMPTS"?',
        "                  hint: fix DJANGO_RAY in your settings; docs/configuration.md lists "
        "every key.",
        *ok_lines()[1:3],
        "WARN  ray         not checked: DJANGO_RAY is invalid.",
        "WARN  storage     not checked: DJANGO_RAY is invalid.",
        "5 checks: 2 OK, 2 WARN, 1 FAIL.",
    ]
    assert error is not None


def test_exit_status_of_a_real_process(tmp_path):
    """Through ``python -m django``, as an operator or a probe runs it."""
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJANGO_RAY_TEST_DATABASE": "sqlite",
        "DJANGO_RAY_TEST_SQLITE_PATH": str(tmp_path / "doctor.sqlite3"),
    }

    def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env={**environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert manage("migrate", "-v", "0").returncode == 0
    healthy = manage("django_ray_doctor", RAY_ADDRESS="")
    broken = manage("django_ray_doctor", RAY_ADDRESS="127.0.0.1:1")
    status = manage("django_ray_status")

    assert (healthy.returncode, healthy.stderr) == (0, "")
    assert (broken.returncode, broken.stderr) == (1, "CommandError: 1 check(s) failed.\n")
    assert (status.returncode, status.stdout.splitlines()[-1]) == (0, "Nothing needs attention.")
