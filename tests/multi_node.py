"""A multi-node Ray cluster on 127.0.0.1, for tests: a head and worker nodes, each its own
raylet with its own resources, as Ray's own tests run them (``ray.cluster_utils``).

``ray start`` refuses to join a second node while Ray is kept on loopback
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), and without that Ray advertises the host's
primary address. ``ray.cluster_utils.Cluster`` starts the nodes itself, on 127.0.0.1, so
it runs here in a child process of its own (``python -m tests.multi_node SPEC``), away
from the test process's own Ray connection. It prints one JSON line (the address, the
dashboard, each node's id) and then obeys lines on stdin: ``kill NAME`` (SIGKILL the
node's raylet and every process under it), ``add NAME SPEC`` (a node joins; the answer
is its id), ``stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

HOST = "127.0.0.1"


class MultiNodeCluster:
    """The test side: start the child, read where the cluster is, kill nodes, stop it."""

    def __init__(self, nodes: Mapping[str, Mapping[str, Any]], dashboard_port: int) -> None:
        self.spec = {"nodes": dict(nodes), "dashboard_port": dashboard_port}
        self._process: subprocess.Popen[str] | None = None
        self.address = self.dashboard_url = ""
        self.node_ids: dict[str, str] = {}
        self.dead: set[str] = set()
        self.auth_mode = "disabled"
        self.start_env: dict[str, str] = {}

    def start(self, timeout: float = 120) -> None:
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
        # A killed node is found dead in about a second, not Ray's default half minute.
        env |= {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3"}
        env |= {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_timeout_ms": "1000"}
        env.pop("RAY_ADDRESS", None)
        # Ray Jobs run the `python` on the PATH the nodes start with: this venv's.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        self.start_env = env
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.multi_node", json.dumps(self.spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the child's first line, once all are up
        if not line:
            raise RuntimeError(f"the multi-node cluster did not start ({self._process.wait()})")
        ready = json.loads(line)
        self.address, self.dashboard_url = ready["address"], ready["dashboard_url"]
        self.node_ids = ready["nodes"]

    def kill(self, name: str) -> None:
        """Node death: SIGKILL the node's raylet and all its processes; returns once done."""
        self._say(f"kill {name}")
        self.dead.add(name)

    def add(self, name: str, num_cpus: int, resources: Mapping[str, float] | None = None) -> str:
        """A node joins the running cluster; returns its node id once it is up."""
        spec = {"num_cpus": num_cpus, "resources": dict(resources or {})}
        answer = self._say(f"add {name} {json.dumps(spec)}", expect="ok ")
        self.node_ids[name] = answer.removeprefix("ok ")
        return self.node_ids[name]

    def stop(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self._say("stop")
        try:
            self._process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def _say(self, command: str, expect: str = "ok") -> str:
        assert self._process is not None and self._process.stdin and self._process.stdout
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        answer = self._process.stdout.readline().strip()
        if not answer.startswith(expect):
            raise RuntimeError(f"{command!r}: {answer or 'the cluster process ended'}")
        return answer


def _descendants(pid: int) -> list[int]:
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    return []


def _node_pids(node: Any) -> list[int]:
    pids = [p.process.pid for procs in node.all_processes.values() for p in procs]
    return sorted({pid for top in pids for pid in (top, *_descendants(top))})


def main(spec_text: str) -> None:
    from ray.cluster_utils import Cluster

    spec = json.loads(spec_text)
    (head_name, head), *others = spec["nodes"].items()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": head["num_cpus"],
            "resources": head.get("resources", {}),
            "node_ip_address": HOST,
            "include_dashboard": True,
            "dashboard_host": HOST,
            "dashboard_port": spec["dashboard_port"],
        },
    )
    nodes = {head_name: cluster.head_node}

    def add(name: str, args: dict[str, Any]) -> Any:
        nodes[name] = cluster.add_node(
            num_cpus=args["num_cpus"], resources=args.get("resources", {}), node_ip_address=HOST
        )
        return nodes[name]

    for name, args in others:
        add(name, args)
    cluster.wait_for_nodes()
    ready = {
        "address": cluster.address,
        "dashboard_url": f"http://{HOST}:{spec['dashboard_port']}",
        "nodes": {name: node.node_id for name, node in nodes.items()},
    }
    print(json.dumps(ready), flush=True)
    try:
        for line in sys.stdin:
            command, _, rest = line.strip().partition(" ")
            name, _, args = rest.partition(" ")
            if command == "stop":
                break
            if command == "add" and name not in nodes:
                try:
                    node = add(name, json.loads(args))  # returns once the node registered
                except Exception as exc:  # the test reads why
                    print(f"error: {type(exc).__name__}: {exc}", flush=True)
                else:
                    print(f"ok {node.node_id}", flush=True)
            elif command == "kill" and name in nodes:
                killed = nodes.pop(name)
                cluster.worker_nodes.discard(killed)  # dead: no longer one to wait for
                for pid in _node_pids(killed):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                print("ok", flush=True)
            else:
                print(f"unknown command {line.strip()!r}", flush=True)
    finally:
        cluster.shutdown()
    print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
