"""B1: no-op tasks end to end through django-ray (PostgreSQL + Ray Core) against raw Ray Core.

Both run on the same local Ray cluster in this one process run. django-ray's
time starts when the worker starts (the tasks already enqueued through
Task.enqueue()) and ends when every row is SUCCESSFUL; raw Ray Core's covers
submitting the same number of no-op remote calls asynchronously and gathering
them.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.harness import ray_cluster, report, setup_django


def raw_ray(n: int) -> float:
    import ray

    @ray.remote(max_retries=0)
    def noop() -> None:
        return None

    ray.get([noop.remote() for _ in range(200)])  # warm the worker pool
    started = time.perf_counter()
    ray.get([noop.remote() for _ in range(n)])
    return n / (time.perf_counter() - started)


def django_ray(n: int, concurrency: int) -> tuple[float, float]:
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
    started = time.perf_counter()
    worker.run()
    seconds = time.perf_counter() - started
    done = TaskExecution.objects.filter(state="SUCCESSFUL").count()
    assert done == n, f"only {done} of {n} tasks SUCCESSFUL"
    return n / seconds, n / enqueue_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=500)
    args = parser.parse_args()
    setup_django()
    with ray_cluster():
        raw = raw_ray(args.n)
        ours, enqueue_rate = django_ray(args.n, args.concurrency)
        raw_again = raw_ray(args.n)
    raw_mean = (raw + raw_again) / 2
    report(
        "B1: throughput, Ray Core",
        [
            ("tasks", str(args.n)),
            ("raw Ray Core (before, after)", f"{raw:,.0f}/s, {raw_again:,.0f}/s"),
            (f"django-ray ray_core, concurrency {args.concurrency}", f"{ours:,.0f}/s"),
            ("ratio django-ray / raw (target >= 0.5)", f"{ours / raw_mean:.2f}"),
            ("enqueue() rate, for reference", f"{enqueue_rate:,.0f}/s"),
        ],
        {
            "n": args.n,
            "concurrency": args.concurrency,
            "raw_per_s": [raw, raw_again],
            "django_ray_per_s": ours,
            "ratio": ours / raw_mean,
        },
    )


if __name__ == "__main__":
    main()
