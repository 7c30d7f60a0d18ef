"""B2: enqueue-to-start and enqueue-to-finish latency (PostgreSQL + Ray Core), idle and loaded.

A real ``manage.py django_ray_worker --ray-core`` process runs the tasks; this
process enqueues them one ``enqueue()`` at a time at a steady rate, and each
task returns when it started running. First the worker's maximum rate is
measured (a backlog of no-op tasks, first start to last finish, as the rows
record them, after a first backlog that warms the worker up); then latency at
20 tasks/s (an idle worker) and at half that maximum (a busy one). Claim is
the row's ``started_at``: how long a task waited for the worker, the rest of
its wait being Ray's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchmarks.harness import ROOT, ray_cluster, report, setup_django

CONCURRENCY = 300


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


def wait_done(ids: list[str], timeout: float = 120) -> None:
    from django_ray.models import TaskExecution

    deadline = time.monotonic() + timeout
    while TaskExecution.objects.filter(pk__in=ids, state="SUCCESSFUL").count() < len(ids):
        assert time.monotonic() < deadline, "tasks did not finish"
        time.sleep(0.1)


def maximum_rate(n: int) -> float:
    from django.db import transaction
    from django.db.models import Max, Min

    from benchmarks.tasks import noop
    from django_ray.models import TaskExecution

    with transaction.atomic():  # all visible at once, when the worker is woken
        ids = [noop.enqueue().id for _ in range(n)]
    wait_done(ids)
    span = TaskExecution.objects.filter(pk__in=ids).aggregate(
        first=Min("started_at"), last=Max("finished_at")
    )
    return n / (span["last"] - span["first"]).total_seconds()


def latencies(rate: float, seconds: float) -> tuple[dict[str, float], ...]:
    """Start, finish and claim percentiles (ms) of tasks enqueued at ``rate`` for
    ``seconds``, and the rate actually reached."""
    from django.tasks import default_task_backend

    from benchmarks.tasks import stamp

    count = int(rate * seconds)
    ids = []
    began = time.monotonic()
    for i in range(count):
        if (delay := began + i / rate - time.monotonic()) > 0:
            time.sleep(delay)
        ids.append(stamp.enqueue().id)
    reached = count / (time.monotonic() - began)
    wait_done(ids)
    to_start, to_finish, to_claim = [], [], []
    for result_id in ids:
        result = default_task_backend.get_result(result_id)
        enqueued = result.enqueued_at.timestamp()
        to_start.append((result.return_value - enqueued) * 1000)
        to_finish.append((result.finished_at.timestamp() - enqueued) * 1000)
        to_claim.append((result.started_at.timestamp() - enqueued) * 1000)
    return percentiles(to_start), percentiles(to_finish), percentiles(to_claim), reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per latency run")
    parser.add_argument("--idle-rate", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=5000, help="tasks for the maximum")
    args = parser.parse_args()
    setup_django()
    from benchmarks.tasks import stamp
    from django_ray.models import TaskExecution
    from tests.ray_cluster import ray_subprocess_env

    TaskExecution.objects.all().delete()
    with ray_cluster() as cluster:
        env = ray_subprocess_env(cluster) | {"DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", "django_ray_worker", "--ray-core",
             "--concurrency", str(CONCURRENCY)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            warm = [stamp.enqueue().id]  # the worker's first lease of a Ray worker
            wait_done(warm)
            maximum_rate(2000)  # warm: the worker learns the task, starts its actors
            maximum = maximum_rate(args.backlog)
            idle = latencies(args.idle_rate, args.seconds)
            loaded = latencies(maximum / 2, args.seconds)
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    def cells(values: dict[str, float]) -> str:
        return "/".join(f"{values[k]:.1f}" for k in values)

    report(
        "B2: latency",
        [
            (f"worker's maximum (concurrency {CONCURRENCY}, steady)", f"{maximum:,.0f}/s"),
            (f"idle, {args.idle_rate:g}/s: enqueue-to-start p50/p95/p99 ms", cells(idle[0])),
            ("  enqueue-to-finish p50/p95/p99 ms", cells(idle[1])),
            ("  enqueue-to-claim p50/p95/p99 ms", cells(idle[2])),
            (f"busy, half the maximum ({loaded[3]:,.0f}/s reached): to start p50/p95/p99 ms",
             cells(loaded[0])),
            ("  enqueue-to-finish p50/p95/p99 ms", cells(loaded[1])),
            ("  enqueue-to-claim p50/p95/p99 ms", cells(loaded[2])),
            ("targets", "idle start p50 < 50 ms, p99 < 250 ms; busy start p99 < 100 ms"),
        ],
        {"maximum_per_s": maximum, "idle": {"rate": args.idle_rate, "to_start_ms": idle[0],
         "to_finish_ms": idle[1], "to_claim_ms": idle[2]}, "busy": {"rate": loaded[3],
         "to_start_ms": loaded[0], "to_finish_ms": loaded[1], "to_claim_ms": loaded[2]}},
    )  # fmt: skip


if __name__ == "__main__":
    main()
