"""B1: no-op tasks end to end through django-ray (PostgreSQL + Ray Core) against raw Ray Core.

Both run on the same local Ray cluster in this one process run, alternating
(raw, django-ray, raw, ...); the ratios are of the medians. django-ray's drain
time starts when the worker starts (the tasks already enqueued through
Task.enqueue()) and ends when every row is SUCCESSFUL; its steady time runs
from the first row's start to the last row's finish, as the rows record them.
Raw Ray Core's covers submitting the same number of no-op remote calls
asynchronously and gathering them (after ``ray.init``: steady by nature). The
target is on the steady rate, at the concurrency docs/performance.md
recommends for short tasks; the default concurrency's figure is printed too.
As in a worker process, one dispatcher (Ray connection, warm actors, what it
learned of its tasks) serves every run, after a warm-up run of 2,000 tasks.
The CPU each group of processes spent per task is printed beside the rates: on
two cores, that is what bounds both. A last run, not counted, samples the
worker's loop with py-spy and prints where its time goes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.harness import (
    RESULTS,
    CpuMeter,
    burst_worker,
    profile_summary,
    ray_cluster,
    report,
    sampled,
    setup_django,
)

# docs/performance.md recommends a few hundred for short tasks; the setting's default is 10.
RECOMMENDED = 300
DEFAULT_CONCURRENCY = 10


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
    dispatcher: object, n: int, concurrency: int, profile: Path | None = None
) -> tuple[float, float, CpuMeter, float]:
    """Drain rate (from the worker's start), enqueue() rate, CPU, steady rate: a worker's
    run over ``n`` no-op tasks, through ``dispatcher`` (one per process, as in a real
    worker process, whose Ray connection, warm actors and knowledge of its tasks last)."""
    from django.db.models import Max, Min

    from benchmarks.tasks import noop
    from django_ray.models import TaskExecution

    TaskExecution.objects.all().delete()
    started = time.perf_counter()
    for _ in range(n):
        noop.enqueue()
    enqueue_seconds = time.perf_counter() - started
    worker = burst_worker(concurrency, dispatcher)
    with sampled(profile), CpuMeter() as cpu:
        started = time.perf_counter()
        worker.run()
        seconds = time.perf_counter() - started
    done = TaskExecution.objects.filter(state="SUCCESSFUL").count()
    assert done == n, f"only {done} of {n} tasks SUCCESSFUL"
    span = TaskExecution.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    steady = n / (span["last"] - span["first"]).total_seconds()
    return n / seconds, n / enqueue_seconds, cpu, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument(
        "--concurrency", type=int, default=RECOMMENDED, help="the recommended one for short tasks"
    )
    parser.add_argument("--rounds", type=int, default=2, help="django-ray runs, each between raw")
    parser.add_argument(
        "--profile",
        type=Path,
        default=RESULTS / "b1-profile.txt",
        help="where the last, uncounted run's py-spy samples go",
    )
    args = parser.parse_args()
    setup_django()
    from django_ray.runtime.core import RayCoreDispatcher

    raws, ours, defaults = [], [], []
    with ray_cluster():
        dispatcher = RayCoreDispatcher()
        django_ray(dispatcher, 2000, args.concurrency)  # warm up, as raw_ray does
        raws.append(raw_ray(args.n))
        for _ in range(args.rounds):
            ours.append(django_ray(dispatcher, args.n, args.concurrency))
            raws.append(raw_ray(args.n))
            defaults.append(django_ray(dispatcher, args.n, DEFAULT_CONCURRENCY))
        RESULTS.mkdir(exist_ok=True)
        django_ray(dispatcher, args.n, args.concurrency, args.profile)
        dispatcher.close()
    raw_rate = statistics.median(rate for rate, _ in raws)
    drain = statistics.median(run[0] for run in ours)
    steady = statistics.median(run[3] for run in ours)
    default_steady = statistics.median(run[3] for run in defaults)
    raw_cpu, our_cpu = raws[-1][1], ours[-1][2]
    each = ", ".join
    report(
        "B1: throughput, Ray Core",
        [
            ("tasks", str(args.n)),
            ("raw Ray Core, each run", each(f"{rate:,.0f}/s" for rate, _ in raws)),
            (f"django-ray, concurrency {args.concurrency}: steady, each run",
             each(f"{run[3]:,.0f}/s" for run in ours)),
            ("  drain, from the worker's start", each(f"{run[0]:,.0f}/s" for run in ours)),
            ("steady ratio django-ray / raw (target >= 0.8)", f"{steady / raw_rate:.2f}"),
            ("drain ratio django-ray / raw", f"{drain / raw_rate:.2f}"),
            (f"default concurrency {DEFAULT_CONCURRENCY}: steady, each run",
             each(f"{run[3]:,.0f}/s" for run in defaults)),
            ("  its steady ratio to raw", f"{default_steady / raw_rate:.2f}"),
            ("CPU per task, raw (last run)", raw_cpu.describe(args.n)),
            ("CPU per task, django-ray (last run)", our_cpu.describe(args.n)),
            ("enqueue() rate, for reference", f"{statistics.median(r[1] for r in ours):,.0f}/s"),
        ],
        {
            "n": args.n,
            "concurrency": args.concurrency,
            "raw_per_s": [rate for rate, _ in raws],
            "django_ray_steady_per_s": [run[3] for run in ours],
            "django_ray_drain_per_s": [run[0] for run in ours],
            "default_concurrency_steady_per_s": [run[3] for run in defaults],
            "steady_ratio": steady / raw_rate,
            "default_steady_ratio": default_steady / raw_rate,
            "cpu_ms_per_task": {
                "raw": raw_cpu.per_task_ms(args.n),
                "django_ray": our_cpu.per_task_ms(args.n),
            },
        },
    )  # fmt: skip
    print("\nWhat is left: where the worker's loop spends its time (uncounted run, inclusive):")
    for name, share in profile_summary(args.profile, "Worker.run ", top=25):
        print(f"  {share:6.1%}  {name}")


if __name__ == "__main__":
    main()
