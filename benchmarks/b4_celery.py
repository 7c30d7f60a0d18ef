"""B4: Celery tasks through Redis under ``-P prefork -c 2`` and under ``-P django_ray -c 8``.

Each pool is a real ``celery worker`` process; N no-op tasks and then 200 tasks
that sleep 100 ms are sent and their results gathered. Same broker, same run.
The sleep batch's ideal is 200 x 0.1 s / concurrency.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from benchmarks.harness import ROOT, ray_cluster, report, setup_django

CELERY = str(ROOT / ".venv" / "bin" / "celery")


def start_worker(pool: str, concurrency: int, env: dict[str, str]) -> subprocess.Popen:
    worker = subprocess.Popen(
        [CELERY, "-A", "benchmarks.celery_app", "worker", "-P", pool, "-c", str(concurrency),
         "-n", f"bench-{pool}@localhost", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    from benchmarks.celery_app import app

    deadline = time.monotonic() + 120
    while not app.control.ping(timeout=0.5, destination=[f"bench-{pool}@localhost"]):
        assert time.monotonic() < deadline, f"the {pool} worker did not start"
    return worker


def rate(task, n: int) -> float:
    started = time.perf_counter()
    results = [task.delay() for _ in range(n)]
    for result in results:
        result.get(timeout=600)
    return time.perf_counter() - started


def measure(pool: str, concurrency: int, n: int, env: dict[str, str]) -> tuple[float, float]:
    from benchmarks.celery_app import nap, noop

    worker = start_worker(pool, concurrency, env)
    try:
        rate(noop, 50)  # warm up
        noop_seconds = rate(noop, n)
        nap_seconds = rate(nap, 200)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
    return n / noop_seconds, nap_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    setup_django()
    from tests.ray_cluster import ray_subprocess_env

    # Ray schedules by logical CPUs: 8 let 8 tasks that mostly wait run at once.
    with ray_cluster(num_cpus=8) as cluster:
        env = ray_subprocess_env(cluster) | {"PYTHONPATH": str(ROOT)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        prefork_rate, prefork_nap = measure("prefork", 2, args.n, env)
        ray_rate, ray_nap = measure("django_ray", 8, args.n, env)
    ideal_prefork, ideal_ray = 200 * 0.1 / 2, 200 * 0.1 / 8
    report(
        "B4: Celery pools",
        [
            (f"no-op x{args.n}, prefork -c 2", f"{prefork_rate:,.0f}/s"),
            (f"no-op x{args.n}, django_ray -c 8", f"{ray_rate:,.0f}/s"),
            ("no-op ratio django_ray / prefork (target >= 1)", f"{ray_rate / prefork_rate:.2f}"),
            ("200 x 100 ms, prefork -c 2", f"{prefork_nap:.1f} s (ideal {ideal_prefork:.1f} s)"),
            ("200 x 100 ms, django_ray -c 8", f"{ray_nap:.1f} s (ideal {ideal_ray:.1f} s)"),
            ("django_ray sleep batch / ideal (target <= 1.2)", f"{ray_nap / ideal_ray:.2f}"),
        ],
        {"n": args.n, "prefork_per_s": prefork_rate, "django_ray_per_s": ray_rate,
         "prefork_sleep_s": prefork_nap, "django_ray_sleep_s": ray_nap,
         "sleep_ratio_to_ideal": ray_nap / ideal_ray, "pid": os.getpid()},
    )  # fmt: skip


if __name__ == "__main__":
    main()
