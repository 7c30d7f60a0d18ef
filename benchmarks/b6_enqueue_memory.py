"""B6: enqueue() latency on PostgreSQL, and the memory (RSS) of an idle and a busy worker.

The worker is a real ``manage.py django_ray_worker --ray-core`` process on the
benchmark database and a local Ray cluster; RSS is read from /proc.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import ROOT, ray_cluster, report, setup_django


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def enqueue_ms(n: int) -> dict[str, float]:
    from benchmarks.tasks import noop

    samples = []
    for _ in range(n):
        started = time.perf_counter()
        noop.enqueue()
        samples.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    setup_django()
    from django_ray.models import TaskExecution
    from tests.ray_cluster import ray_subprocess_env

    TaskExecution.objects.all().delete()
    latency = enqueue_ms(args.n)  # no worker yet: enqueue() alone
    TaskExecution.objects.all().delete()
    with ray_cluster() as cluster:
        env = ray_subprocess_env(cluster) | {"DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "django_ray_worker",
                "--ray-core",
                "--concurrency",
                "200",
                "--address",
                cluster.address,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(15)
            idle = rss_mib(worker.pid)
            enqueue_ms(args.n)
            busy = idle
            while TaskExecution.objects.filter(state="SUCCESSFUL").count() < args.n:
                busy = max(busy, rss_mib(worker.pid))
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    report(
        "B6: enqueue and worker memory",
        [
            (
                f"enqueue() x{args.n} p50/p95/p99",
                "/".join(f"{v:.2f}" for v in latency.values()) + " ms (target p95 < 10 ms)",
            ),
            ("worker RSS idle", f"{idle:.0f} MiB"),
            ("worker RSS busy (peak while running them)", f"{busy:.0f} MiB"),
        ],
        {
            "n": args.n,
            "enqueue_ms": latency,
            "rss_idle_mib": idle,
            "rss_busy_mib": busy,
            "pid": os.getpid(),
        },
    )


if __name__ == "__main__":
    main()
