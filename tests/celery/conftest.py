"""Fixtures of the Celery bridge tests: real Redis, RabbitMQ and Ray, real workers.

Everything this session puts on the broker lives under its own namespace
(queue, control and event exchanges, Redis key prefix), so concurrent runs on
the same Redis or RabbitMQ never see each other's messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

NAMESPACE = f"celery-bridge-{os.getpid()}-{uuid.uuid4().hex[:6]}"
# Set before tests.celery.app is imported anywhere: the app reads it once.
os.environ["CELERY_BRIDGE_TEST_NAMESPACE"] = NAMESPACE

from tests.celery.app import app as celery_app  # noqa: E402
from tests.ray_cluster import LocalRayCluster, ray_subprocess_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.05) -> Any:
    """``predicate()``'s first true value, polled until ``timeout``; fails the test after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {predicate}")


def written_pid(path: Path) -> int:
    """The pid a task wrote to ``path``, once it is there in full."""
    return int(wait_until(lambda: path.exists() and path.read_text().strip()))


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def database_env() -> dict[str, str]:
    """What a process outside pytest needs to open this session's test database."""
    from django.db import connection

    database = connection.settings_dict
    env = {"DJANGO_RAY_TEST_DATABASE": os.environ.get("DJANGO_RAY_TEST_DATABASE", "postgres")}
    if database["ENGINE"].endswith("sqlite3"):
        env["DJANGO_RAY_TEST_SQLITE_PATH"] = str(database["NAME"])
    else:
        env["DJANGO_RAY_TEST_PG_NAME"] = str(database["NAME"])
    return env


@pytest.fixture(scope="session")
def celery_namespace() -> str:
    return NAMESPACE


@pytest.fixture(scope="session")
def signal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the test tasks' signal receivers write which process fired them."""
    path = tmp_path_factory.mktemp("signals")
    os.environ["CELERY_BRIDGE_TEST_SIGNALS"] = str(path)
    return path


# What the in-process workers run under: Ray losses retried at once (two attempts
# in all), and Ray workers open the test database, as a project's would its own.
def ray_settings() -> dict[str, Any]:
    return {
        "RUNNER": "ray_core",
        "MAX_TASK_ATTEMPTS": 2,
        "RETRY_BACKOFF_SECONDS": 0,
        "RAY_RUNTIME_ENV": {"env_vars": database_env()},
    }


@contextmanager
def in_process_worker(app: Any, django_db_blocker: Any, **options: Any) -> Iterator[Any]:
    """A Celery worker thread of ``app`` with the django_ray pool (``start_worker``)."""
    from celery.contrib.testing.worker import start_worker
    from django.test import override_settings

    from celery_bridge.pool import RayPool

    options = {
        "pool": RayPool, "concurrency": 4, "perform_ping_check": False,
        "shutdown_timeout": 60, "loglevel": "WARNING", **options,
    }  # fmt: skip
    with ExitStack() as stack:
        stack.enter_context(override_settings(DJANGO_RAY=ray_settings()))
        # The Django fixup runs Django's checks as the worker starts; on SQLite
        # they open a cursor.
        with django_db_blocker.unblock():
            started = stack.enter_context(start_worker(app, **options))
        yield started


@pytest.fixture(scope="module")
def bridge_worker(
    ray_connection: str, django_db_setup: None, django_db_blocker: Any, signal_dir: Path
) -> Iterator[Any]:
    """An in-process Celery worker with the django_ray pool on the session's Ray cluster."""
    # Rows are pinned by the subprocess tests; this worker's thread writes none.
    celery_app.conf.django_ray_record_executions = False
    hostname = f"inproc-{NAMESPACE}@localhost"
    with in_process_worker(celery_app, django_db_blocker, hostname=hostname) as worker:
        yield worker


def inspect(worker_name: str) -> Any:
    return celery_app.control.inspect(destination=[worker_name], timeout=5)


class WorkerProcess:
    """A real ``celery worker`` subprocess; stopped by its own pid only."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path, name: str) -> None:
        self.name = name
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, app: Any = celery_app, timeout: float = 90) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.output()[-4000:]}")
            return bool(app.control.ping(destination=[self.name], timeout=0.5))

        wait_until(ready, timeout=timeout, interval=0.2)

    def stop(self, timeout: float = 60) -> int:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not end within ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def launch_worker(
    cluster: LocalRayCluster,
    log: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    app: Any = celery_app,
) -> WorkerProcess:
    """``celery -A tests.celery.app worker ARGS`` on the test database and ``cluster``.

    It writes no execution rows unless ``env`` sets ``CELERY_BRIDGE_TEST_RECORD=1``.
    """
    name = f"{log.stem}-{NAMESPACE}@localhost"
    command = [CELERY, "-A", "tests.celery.app", "worker", "-n", name, "-l", "INFO"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat", *args]
    full_env = ray_subprocess_env(cluster) | database_env()
    full_env |= {"PYTHONPATH": str(ROOT), "CELERY_BRIDGE_TEST_RECORD": "0", **(env or {})}
    worker = WorkerProcess(command, full_env, log, name)
    if wait:
        try:
            worker.wait_ready(app)
        except BaseException:
            worker.stop()
            raise
    return worker


@pytest.fixture
def start_worker_process(
    ray_cluster: LocalRayCluster, django_db_setup: None, tmp_path: Path
) -> Iterator[Any]:
    """Start worker subprocesses (see :func:`launch_worker`); all stopped at the end."""
    started: list[WorkerProcess] = []

    def start(*args: str, **options: Any) -> WorkerProcess:
        log = tmp_path / f"worker{len(started)}.log"
        worker = launch_worker(ray_cluster, log, *args, **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
