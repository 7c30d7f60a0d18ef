"""The throw-away Ray cluster used by the Ray tests starts, runs work and leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray_cluster import LocalRayCluster, ray_subprocess_env

REPO_ROOT = Path(__file__).resolve().parents[2]

# Run as a separate driver so this test never touches the pytest process's Ray state.
DRIVER = """
import json, os, ray
ray.init(runtime_env={"env_vars": {"DR_PROBE": "42"}})

@ray.remote
def probe():
    import tests.ray_cluster  # importable thanks to the driver's cwd
    return {"probe": os.environ.get("DR_PROBE"), "module": tests.ray_cluster.__name__}

print(json.dumps(ray.get(probe.remote())))
"""


@pytest.mark.ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cluster_runs_a_task_and_stops_without_leftovers() -> None:
    cluster = LocalRayCluster()
    cluster.start(num_cpus=1)
    try:
        temp_dir = cluster.temp_dir
        assert cluster.address.startswith("127.0.0.1:")
        assert cluster.processes()
        result = subprocess.run(
            [sys.executable, "-c", DRIVER],
            env=ray_subprocess_env(cluster),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.splitlines()[-1]) == {
            "probe": "42",
            "module": "tests.ray_cluster",
        }
    finally:
        cluster.stop()

    assert not Path(temp_dir).exists()
    ps = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True, check=True)
    assert [line for line in ps.stdout.splitlines() if temp_dir in line] == []
