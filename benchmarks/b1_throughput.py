"""B1: no-op tasks end to end through django-ray (PostgreSQL + Ray Core) against raw Ray Core.

Both run on the same local Ray cluster in this one process run, alternating
(raw, django-ray, raw, ...); the ratio is of the medians. django-ray's
time starts when the worker starts (the tasks already enqueued through
Task.enqueue()) and ends when every row is SUCCESSFUL; raw Ray Core's covers
submitting the same number of no-op remote calls asynchronously and gathering
them. The CPU each group of processes spent per task is printed beside the
rates: on two cores, that is what bounds both.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.harness import (
    CpuMeter,
    profile_summary,
    ray_cluster,
    report,
    sampled,
    setup_django,
)


def raw_ray(n: int) -> tuple[float, CpuMeter]:
    import ray

    @ray.remote(max_retries=0)
    def noop() -> None:
        return None

    ray.get([noop.remote() for _ in range(200)])  # warm the worker pool
    with CpuMeter() as cpu:
        started = time.perf_counter()
        ray.get([noop.remote() for _ in range(n)])
        seconds = time.perf_counter() - started
    return n / seconds, cpu


def django_ray(
    n: int, concurrency: int, profile: Path | None = None
) -> tuple[float, float, CpuMeter]:
    from benchmarks.tasks import noop
    from django_ray.models import TaskExecution
    from django_ray.runtime.core import RayCoreDispatcher
    from django_ray.worker.loop import Worker, WorkerOptions

    TaskExecution.objects.all().delete()
    started = time.perf_counter()
    for _ in range(n):
        noop.enqueue()
    enqueue_seconds = time.perf_counter() - started
    worker = Worker(
        WorkerOptions(
            queues=("default",),
            concurrency=concurrency,
            heartbeat_seconds=15,
            lease_seconds=60,
            burst=True,
            busy_wait_seconds=0.05,
        ),
        RayCoreDispatcher(),
    )
    with sampled(profile), CpuMeter() as cpu:
        started = time.perf_counter()
        worker.run()
        seconds = time.perf_counter() - started
    done = TaskExecution.objects.filter(state="SUCCESSFUL").count()
    assert done == n, f"only {done} of {n} tasks SUCCESSFUL"
    return n / seconds, n / enqueue_seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="django-ray runs, each between raw")
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample the worker's loop with py-spy in the last django-ray run, into this file "
        "(slows that run down: read the shares, not its rate)",
    )
    args = parser.parse_args()
    setup_django()
    raws, ours = [], []
    with ray_cluster():
        raws.append(raw_ray(args.n))
        for round_ in range(args.rounds):
            profile = args.profile if round_ == args.rounds - 1 else None
            ours.append(django_ray(args.n, args.concurrency, profile))
            raws.append(raw_ray(args.n))
    raw_rate = statistics.median(rate for rate, _ in raws)
    our_rate = statistics.median(rate for rate, _, _ in ours)
    raw_cpu, our_cpu = raws[-1][1], ours[-1][2]
    report(
        "B1: throughput, Ray Core",
        [
            ("tasks", str(args.n)),
            ("raw Ray Core, each run", ", ".join(f"{rate:,.0f}/s" for rate, _ in raws)),
            (
                f"django-ray ray_core, concurrency {args.concurrency}, each run",
                ", ".join(f"{rate:,.0f}/s" for rate, _, _ in ours),
            ),
            ("ratio of medians django-ray / raw (target >= 0.5)", f"{our_rate / raw_rate:.2f}"),
            ("CPU per task, raw (last run)", raw_cpu.describe(args.n)),
            ("CPU per task, django-ray (last run)", our_cpu.describe(args.n)),
            ("enqueue() rate, for reference", f"{statistics.median(e for _, e, _ in ours):,.0f}/s"),
        ],
        {
            "n": args.n,
            "concurrency": args.concurrency,
            "raw_per_s": [rate for rate, _ in raws],
            "django_ray_per_s": [rate for rate, _, _ in ours],
            "ratio": our_rate / raw_rate,
            "cpu_ms_per_task": {
                "raw": raw_cpu.per_task_ms(args.n),
                "django_ray": our_cpu.per_task_ms(args.n),
            },
        },
    )

    if args.profile:
        print("\nWhere the worker's loop spends its time (share of samples, inclusive):")
        for name, share in profile_summary(args.profile, "Worker.run "):
            print(f"  {share:6.1%}  {name}")


if __name__ == "__main__":
    main()
