"""Real worker processes, fault injection and the one-line summary every fault test prints."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection

from django_ray.models import TaskExecution, WorkerLease
from tests.conftest import ROOT
from tests.ray_cluster import LocalRayCluster, ray_subprocess_env

# Short enough that a lapsed lease is noticed within seconds, long enough for a busy
# two-core machine: a worker that skips one heartbeat keeps its lease.
FAST = {
    "WORKER_LEASE_SECONDS": 3,
    "WORKER_HEARTBEAT_SECONDS": 1,
    "STUCK_TASK_TIMEOUT_SECONDS": 5,
    "RETRY_BACKOFF_SECONDS": 0,
}


def wait_for[T](condition: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``condition`` until it is truthy; its value, or an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
    return value


def database_name() -> str:
    return str(connection.settings_dict["NAME"])


def jobs_runtime_env(overrides: dict[str, Any]) -> dict[str, Any]:
    """What a Ray Job's entrypoint needs to find this code, the test database and the policy."""
    return {
        "env_vars": {
            "PYTHONPATH": str(ROOT),
            "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
            "DJANGO_RAY_TEST_DATABASE": "postgres",
            "DJANGO_RAY_TEST_PG_NAME": database_name(),
            "DJANGO_RAY_TEST_OVERRIDES": json.dumps(overrides),
        }
    }


class WorkerProcess:
    """``python -m django django_ray_worker`` against the test database and a Ray cluster."""

    def __init__(
        self,
        cluster: LocalRayCluster,
        log_dir: Path,
        *,
        runner: str = "ray_core",
        concurrency: int = 4,
        extra: Iterable[str] = (),
        overrides: dict[str, Any] | None = None,
        name: str = "worker",
    ) -> None:
        self.cluster = cluster
        self.runner = runner
        self.concurrency = concurrency
        self.overrides = {**FAST, **(overrides or {})}
        if runner == "ray_job":
            self.overrides["RAY_RUNTIME_ENV"] = jobs_runtime_env(self.overrides)
        self.extra = list(extra)
        self.log_dir = log_dir
        self.name = name
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stop_requested = False
        self.logs: list[Path] = []

    @property
    def address(self) -> str:
        return self.cluster.dashboard_url if self.runner == "ray_job" else self.cluster.address

    def start(self) -> WorkerProcess:
        self.starts += 1
        self._stop_requested = False
        log = self.log_dir / f"{self.name}-{self.starts}.log"
        self.logs.append(log)
        env = ray_subprocess_env(self.cluster)
        env |= {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_RAY_TEST_DATABASE": "postgres",
            "DJANGO_RAY_TEST_PG_NAME": database_name(),
            "DJANGO_RAY_TEST_OVERRIDES": json.dumps(self.overrides),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "django", "django_ray_worker"]
        command += [f"--{self.runner.replace('_', '-')}", "--address", self.address]
        command += ["--concurrency", str(self.concurrency), *self.extra]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def worker_id(self, timeout: float = 90) -> str:
        """The id of this process's lease, once it holds one."""

        def lease() -> str | None:
            if not self.alive():
                raise AssertionError(f"{self.name} exited early:\n{self.output()[-3000:]}")
            ids = [
                w
                for w in WorkerLease.objects.alive().values_list("worker_id", flat=True)
                if f"-{self.pid}-" in w
            ]
            return ids[0] if ids else None

        return wait_for(lease, timeout, f"{self.name}'s lease", every=0.2)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease release; what it held is left to the lease rules."""
        if self.alive():
            self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(30)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def request_stop(self) -> None:
        """SIGCONT (in case it was paused) and one SIGTERM, without waiting."""
        if self.alive() and not self._stop_requested:
            self._stop_requested = True
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it is still there after a while (test teardown)."""
        if self.process is None:
            return None
        self.request_stop()
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return self.process.wait(30)

    def output(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')}"
            for log in self.logs
            if log.exists()
        )


class Markers:
    """Counts executions: the test tasks leave one file per execution under ``root/token``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    def count(self, token: str) -> int:
        directory = self.root / token
        return len(os.listdir(directory)) if directory.is_dir() else 0

    def counts(self, tokens: Iterable[str]) -> dict[str, int]:
        return {token: self.count(token) for token in tokens}


@dataclass
class Summary:
    """One fault test's figures; ``lost`` counts tasks that did not reach their expected end."""

    name: str
    tasks: int
    executions: int
    lost: int
    duplicates: int
    recovery_seconds: float
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        notes = "".join(f" {key}={value}" for key, value in self.notes.items())
        return (
            f"[{self.name}] tasks={self.tasks} executions={self.executions} lost={self.lost} "
            f"duplicates={self.duplicates} recovery_seconds={self.recovery_seconds:.1f}{notes}"
        )

    def report(self) -> Summary:
        print(f"\n{self.line()}", flush=True)
        return self


def tally(
    name: str,
    results: dict[str, str],
    markers: Markers,
    *,
    expected: str = "SUCCESSFUL",
    recovery_seconds: float,
    **notes: Any,
) -> Summary:
    """The summary for ``results`` (token -> result id), each expected to end ``expected``
    after exactly one execution; more executions are duplicates, none (or another end) lost."""
    states = dict(
        TaskExecution.objects.filter(pk__in=list(results.values())).values_list("pk", "state")
    )
    runs = markers.counts(results)
    lost = sum(
        1
        for token, result_id in results.items()
        if states.get(_uuid(result_id)) != expected or runs[token] == 0
    )
    return Summary(
        name=name,
        tasks=len(results),
        executions=sum(runs.values()),
        lost=lost,
        duplicates=sum(max(count - 1, 0) for count in runs.values()),
        recovery_seconds=recovery_seconds,
        notes=notes,
    )


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)


def rows_of(worker_id: str) -> int:
    """RUNNING rows that name ``worker_id`` as their worker."""
    return TaskExecution.objects.running().filter(worker=worker_id).count()


def unfinished() -> int:
    return TaskExecution.objects.exclude(state__in=["SUCCESSFUL", "FAILED"]).count()


class RestartableCluster(LocalRayCluster):
    """A private cluster that can be stopped and started again on the same ports, so the
    address its clients were given stays right (F3)."""

    def restart(self, timeout: float = 90) -> None:
        from unittest import mock

        import tests.ray_cluster as ray_cluster

        base = self._base_port
        self.stop()
        wait_for(
            lambda: all(_nobody_listens(base + i) for i in range(10)),
            30,
            f"ports {base}-{base + 9} to be free again",
            every=0.25,
        )
        with mock.patch.object(ray_cluster, "_free_port_slot", lambda: base):
            self.start(num_cpus=self.num_cpus, timeout=timeout)

    def start(self, num_cpus: int = 4, **options: Any) -> None:  # type: ignore[override]
        self.num_cpus = num_cpus
        super().start(num_cpus=num_cpus, **options)


def _nobody_listens(port: int) -> bool:
    """No socket listens on ``port`` (connections left in TIME_WAIT do not count: Ray's
    servers bind with SO_REUSEADDR, as this probe does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True


def started_pids(markers: Markers, token: str) -> list[int]:
    """Pids of the processes that started executions of ``started_then_sleep`` for ``token``."""
    directory = markers.root / token / "started"
    names = os.listdir(directory) if directory.is_dir() else []
    return sorted(int(name.split("-", 1)[0]) for name in names)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
