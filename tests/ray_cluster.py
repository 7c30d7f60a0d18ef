"""A private, throw-away Ray cluster for tests, run with ``ray start --head --block``.

Each cluster has its own temp dir and its own block of ports, so several can run side
by side (and next to anyone else's cluster). Stopping one kills only its own processes,
by pid; it never calls ``ray stop``.

Found with Ray 2.60 on Linux:

* ``ray start --temp-dir=X`` writes ``X/ray_current_cluster``, not
  ``/tmp/ray/ray_current_cluster``; removing the temp dir leaves no stale address.
* Ray swaps ``--node-ip-address=127.0.0.1`` for the host's primary IP; the cluster
  still answers on 127.0.0.1.
* ``ray start`` turns token auth on when ``~/.ray/auth_token`` exists (any ``ray.init()``
  that starts a local cluster writes it). A client given an explicit address then needs
  ``RAY_AUTH_MODE=token`` in its environment *before* it imports ray.
"""

from __future__ import annotations

import atexit
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
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"
# Ports come in aligned slots below Linux's ephemeral range (32768+), so outgoing
# connections never take them: the first ones for the services, the rest for workers.
# A running cluster holds its slot's first port, so another cluster skips that slot.
_SLOT_SIZE, _FIRST_PORT, _LAST_PORT, _FIRST_WORKER_PORT = 100, 20000, 32000, 10
_SERVICE_PORT_FLAGS = (
    *("--port", "--dashboard-port", "--node-manager-port", "--object-manager-port"),
    *("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port"),
    *("--runtime-env-agent-port", "--metrics-export-port", "--ray-client-server-port"),
)


def _port_is_free(port: int) -> bool:
    # The wildcard address clashes with a socket on any address; Ray binds some ports
    # to the host's primary IP only.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True


def _free_port_slot() -> int:
    """The first port of a slot whose ports are all free right now."""
    slots = list(range(_FIRST_PORT, _LAST_PORT - _SLOT_SIZE + 1, _SLOT_SIZE))
    random.shuffle(slots)
    for base in slots:
        if all(_port_is_free(port) for port in range(base, base + _SLOT_SIZE)):
            return base
    raise RuntimeError(f"no free block of {_SLOT_SIZE} ports in {_FIRST_PORT}-{_LAST_PORT}")


def _auth_token(env: Mapping[str, str]) -> str | None:
    """The token a Ray process with environment ``env`` would send, if any."""
    if token := env.get("RAY_AUTH_TOKEN"):
        return token.strip()
    home = Path(env.get("HOME", "~")).expanduser()
    path = Path(env.get("RAY_AUTH_TOKEN_PATH") or home / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


def _get_json(url: str, token: str | None = None) -> object:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.load(response)


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """``{pid: (ppid, session id, start time)}`` of all processes but zombies."""
    table = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            # The fields after "(comm)" start at field 3, the state; see proc(5).
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
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
        """Pids that outlived SIGTERM to ``ray start``, so ``stop()`` SIGKILLed them."""

    @property
    def address(self) -> str:
        """The GCS address, for ``ray.init(address=...)`` and ``RAY_ADDRESS``."""
        return f"{HOST}:{self._base_port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard's URL, which is the Jobs API's."""
        return f"http://{HOST}:{self._base_port + 1}"

    @property
    def temp_dir(self) -> str:
        """The ``--temp-dir``; it holds the logs, and every Ray process here names it."""
        if self._temp_dir is None:
            raise RuntimeError("the cluster is not started")
        return self._temp_dir

    @property
    def log_path(self) -> Path:
        """The output of ``ray start``."""
        return Path(self.temp_dir) / "ray-start.log"

    def start(
        self,
        num_cpus: int = 4,
        resources: dict[str, float] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 90,
    ) -> None:
        """Start the head node; return once it, its GCS and its Jobs API are up."""
        if self._process is not None:
            raise RuntimeError("the cluster is already started")
        # Unix socket paths live in the temp dir and must stay under ~107 characters.
        self._temp_dir = tempfile.mkdtemp(prefix="dr-", dir="/tmp")
        self._base_port = base = _free_port_slot()
        bin_dir = Path(sys.executable).parent
        # Ray Jobs run the `python` found on this PATH.
        path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
        self.start_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        # On SIGTERM a busy node would otherwise drain for up to 30 s first.
        self.start_env |= {"PATH": path, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        self.start_env |= env or {}
        command = [
            str(bin_dir / "ray"),
            *("start", "--head", "--block", "--include-dashboard=true"),
            f"--node-ip-address={HOST}",
            f"--dashboard-host={HOST}",
            *(f"{flag}={base + i}" for i, flag in enumerate(_SERVICE_PORT_FLAGS)),
            f"--min-worker-port={base + _FIRST_WORKER_PORT}",
            f"--max-worker-port={base + _SLOT_SIZE - 1}",
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
        # A test run that ends on an exception must not leave the cluster behind.
        atexit.register(self.stop)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        # The dashboard answers seconds before the raylet is up, so the log comes first.
        assert self._process is not None
        deadline = time.monotonic() + timeout
        problem = "ray start has not reported 'Ray runtime started.'"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                problem = f"ray start exited with {self._process.returncode}"
                break
            time.sleep(0.25)
            if "Ray runtime started." not in self.log_path.read_text(errors="replace"):
                continue
            try:
                socket.create_connection((HOST, self._base_port), timeout=1).close()
                mode = _get_json(f"{self.dashboard_url}/api/authentication_mode")
                self.auth_mode = str(mode["authentication_mode"])  # type: ignore[index]
                token = _auth_token(self.start_env) if self.auth_mode == "token" else None
                _get_json(f"{self.dashboard_url}/api/version", token)
                return
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problem = repr(exc)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Ray cluster not ready ({problem}); ray start output:\n{tail}")

    def _members(self) -> dict[int, int]:
        """``{pid: start time}`` of the cluster's processes.

        Those in the session of ``ray start`` or naming the temp dir, and all their
        descendants: a Ray Job runs its entrypoint in a session of its own.
        """
        if self._process is None or self._temp_dir is None:
            return {}
        table = _proc_table()
        members = {
            pid
            for pid, (_, sid, _) in table.items()
            if pid != os.getpid() and (sid == self._process.pid or self._temp_dir in _cmdline(pid))
        }
        todo = list(members)
        while todo:
            parent = todo.pop()
            children = {pid for pid, (ppid, _, _) in table.items() if ppid == parent}
            todo.extend(children - members)
            members |= children
        return {pid: table[pid][2] for pid in members}

    def processes(self) -> list[int]:
        """Pids of the cluster's live processes."""
        return sorted(self._members())

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM ``ray start``, SIGKILL what is left of the cluster, remove the temp dir.

        The process tree is taken first: once ``ray start`` is gone its orphans hang off
        init, and only their start time tells them from new processes with their pids.
        """
        if (process := self._process) is None:
            return
        atexit.unregister(self.stop)
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
            alive = {pid for pid, start in before.items() if table.get(pid, (0, 0, -1))[2] == start}
            if not (pids := sorted(alive | self._members().keys())):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray processes survived SIGKILL: {pids}")
            self.killed += [pid for pid in pids if pid not in self.killed]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self._process = self._temp_dir = None

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def ray_subprocess_env(
    cluster: LocalRayCluster, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child process (driver, Django worker, Jobs client) of ``cluster``.

    ``base`` (default ``os.environ``) plus: ``RAY_ADDRESS`` for ``ray.init()``,
    ``RAY_API_SERVER_ADDRESS`` for the ``ray job`` CLI, the cluster's ``RAY_AUTH_MODE``
    (an explicit address never turns token auth on by itself), any token variable
    ``ray start`` had, and its PATH (the venv first).
    """
    env = dict(os.environ if base is None else base)
    env |= {
        "RAY_ADDRESS": cluster.address,
        "RAY_API_SERVER_ADDRESS": cluster.dashboard_url,
        "RAY_AUTH_MODE": cluster.auth_mode,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": cluster.start_env["PATH"],
    }
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "HOME"):
        if name in cluster.start_env:
            env[name] = cluster.start_env[name]
    return env
