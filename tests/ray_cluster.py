"""A private, throw-away Ray cluster for tests, run with ``ray start --head --block``.

Every cluster gets its own temp dir and its own block of loopback ports, so several
can run side by side (and next to a developer's own cluster). Stopping one kills only
its own processes, by pid; it never calls ``ray stop``.

Found with Ray 2.60: ``ray start --temp-dir=X`` writes ``X/ray_current_cluster``, not
``/tmp/ray/ray_current_cluster``, so removing the temp dir leaves no stale address.
Ray swaps ``--node-ip-address=127.0.0.1`` for the host's primary IP; the cluster still
answers on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
# Ports come in aligned slots below Linux's ephemeral range (32768+), so outgoing
# connections never take them. The first ports of a slot are the services', the
# rest are the worker ports. A running cluster holds its slot's GCS port, so a
# second cluster sees that slot as taken.
_SLOT_SIZE = 100
_FIRST_PORT, _LAST_PORT = 20000, 32000
_SERVICE_PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--ray-client-server-port",
)
_FIRST_WORKER_OFFSET = 10


def _port_is_free(port: int) -> bool:
    # The wildcard address clashes with a socket bound to any address (Ray binds
    # some ports to the host's primary IP only).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True


def _free_port_slot() -> int:
    """Return the first port of a slot whose ports are all free right now."""
    slots = list(range(_FIRST_PORT, _LAST_PORT - _SLOT_SIZE + 1, _SLOT_SIZE))
    random.shuffle(slots)
    for base in slots:
        if all(_port_is_free(port) for port in range(base, base + _SLOT_SIZE)):
            return base
    raise RuntimeError(f"no free block of {_SLOT_SIZE} ports in {_FIRST_PORT}-{_LAST_PORT}")


def _auth_token(env: Mapping[str, str]) -> str | None:
    """The token a Ray process with environment ``env`` would use, if any."""
    if token := env.get("RAY_AUTH_TOKEN"):
        return token.strip()
    path = Path(env.get("RAY_AUTH_TOKEN_PATH") or Path(env.get("HOME", "~")) / ".ray/auth_token")
    path = path.expanduser()
    return path.read_text().strip() if path.is_file() else None


def _http_get_json(url: str, token: str | None = None) -> object:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.load(response)


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """``{pid: (ppid, session id, start time)}`` of every process but zombies, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The fields after "(comm)" start at field 3 (state); see proc(5).
            fields = stat.rpartition(")")[2].split()
            if fields[0] != "Z":
                table[int(entry.name)] = (int(fields[1]), int(fields[3]), int(fields[19]))
    return table


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class LocalRayCluster:
    """One head node on 127.0.0.1, in its own session, temp dir and port block."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._temp_dir: str | None = None
        self._base_port = 0
        self.auth_mode = "disabled"
        """``"token"`` or ``"disabled"``, as the running dashboard reports it."""
        self.start_env: dict[str, str] = {}
        """The environment ``ray start`` ran with."""
        self.killed: list[int] = []
        """Pids that outlived SIGTERM to ``ray start`` and were SIGKILLed by ``stop()``."""

    @property
    def address(self) -> str:
        """The GCS address, for ``ray.init(address=...)`` and ``RAY_ADDRESS``."""
        return f"{HOST}:{self._base_port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard (and Jobs API) URL."""
        return f"http://{HOST}:{self._base_port + 1}"

    @property
    def temp_dir(self) -> str:
        """The cluster's ``--temp-dir``; every Ray process of the cluster names it."""
        if self._temp_dir is None:
            raise RuntimeError("the cluster is not started")
        return self._temp_dir

    @property
    def log_path(self) -> Path:
        """Where the output of ``ray start`` goes."""
        return Path(self.temp_dir) / "ray-start.log"

    def start(
        self,
        num_cpus: int = 4,
        resources: dict[str, float] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 90,
    ) -> None:
        """Start the head node and wait until the GCS and the Jobs API answer."""
        if self._process is not None:
            raise RuntimeError("the cluster is already started")
        # Unix socket paths live under the temp dir and must stay under ~107 chars.
        self._temp_dir = tempfile.mkdtemp(prefix="dr-", dir="/tmp")
        self._base_port = _free_port_slot()
        bin_dir = str(Path(sys.executable).parent)
        self.start_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.start_env["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
        self.start_env.update(env or {})
        ports = [
            f"{flag}={self._base_port + offset}" for offset, flag in enumerate(_SERVICE_PORT_FLAGS)
        ]
        command = [
            str(Path(bin_dir) / "ray"),
            "start",
            "--head",
            "--block",
            f"--node-ip-address={HOST}",
            f"--dashboard-host={HOST}",
            "--include-dashboard=true",
            *ports,
            f"--min-worker-port={self._base_port + _FIRST_WORKER_OFFSET}",
            f"--max-worker-port={self._base_port + _SLOT_SIZE - 1}",
            f"--temp-dir={self._temp_dir}",
            f"--num-cpus={num_cpus}",
            f"--resources={json.dumps(resources or {})}",
            "--disable-usage-stats",
        ]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self._temp_dir,
                env=self.start_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """Wait for ``ray start`` to report the node up, then for the GCS and the Jobs API.

        The dashboard answers a few seconds before the raylet is up, so the log line
        comes first.
        """
        deadline = time.monotonic() + timeout
        problem = "ray start has not reported 'Ray runtime started.'"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                problem = f"ray start exited with {self._process.returncode}"
                break
            time.sleep(0.25)
            if "Ray runtime started." not in self.log_path.read_text(errors="replace"):
                continue
            try:
                socket.create_connection((HOST, self._base_port), timeout=1).close()
                mode = _http_get_json(f"{self.dashboard_url}/api/authentication_mode")
                self.auth_mode = str(mode["authentication_mode"])  # type: ignore[index]
                token = _auth_token(self.start_env) if self.auth_mode == "token" else None
                _http_get_json(f"{self.dashboard_url}/api/version", token)
                return
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problem = repr(exc)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Ray cluster not ready ({problem}); ray start output:\n{tail}")

    def _members(self) -> dict[int, int]:
        """``{pid: start time}`` of this cluster's live processes.

        Those are the processes in the session of ``ray start``, those naming the temp
        dir, and all their descendants: Ray Jobs run their entrypoint in a new session.
        """
        if self._process is None or self._temp_dir is None:
            return {}
        table = _proc_table()
        members = {
            pid
            for pid, (_, sid, _) in table.items()
            if pid != os.getpid() and (sid == self._process.pid or self._temp_dir in _cmdline(pid))
        }
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = list(members)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in members:
                    members.add(child)
                    todo.append(child)
        return {pid: table[pid][2] for pid in members}

    def processes(self) -> list[int]:
        """Pids of this cluster's live processes (see ``_members``)."""
        return sorted(self._members())

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM ``ray start``, SIGKILL whatever of the cluster survives, drop the temp dir.

        The process tree is recorded first: once ``ray start`` is gone, orphans hang
        off init and only their start time tells them from a new process with the
        same pid.
        """
        process = self._process
        if process is None:
            return
        before = self._members()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        deadline = time.monotonic() + timeout
        while True:
            table = _proc_table()
            alive = {p for p, start in before.items() if p in table and table[p][2] == start}
            if not (pids := sorted(alive | set(self._members()))):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray processes survived SIGKILL: {pids}")
            self.killed.extend(pid for pid in pids if pid not in self.killed)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self._process = None
        self._temp_dir = None

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def ray_subprocess_env(
    cluster: LocalRayCluster, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for a child process (driver, Django worker, Jobs API client) of ``cluster``.

    ``RAY_ADDRESS`` points ``ray.init()`` (with no address) at the cluster and
    ``RAY_API_SERVER_ADDRESS`` the ``ray job`` CLI at its dashboard. An explicit
    address never turns token auth on by itself, so ``RAY_AUTH_MODE`` is always set to
    what the cluster uses; a token given to ``ray start`` by variable is passed on.
    """
    env = dict(os.environ if base is None else base)
    env["RAY_ADDRESS"] = cluster.address
    env["RAY_API_SERVER_ADDRESS"] = cluster.dashboard_url
    env["RAY_AUTH_MODE"] = cluster.auth_mode
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        if name in cluster.start_env:
            env[name] = cluster.start_env[name]
    env["PATH"] = cluster.start_env.get("PATH", env.get("PATH", ""))
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env
