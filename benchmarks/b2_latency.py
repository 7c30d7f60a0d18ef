"""B2: enqueue-to-start and enqueue-to-finish latency on an idle worker (PostgreSQL + Ray Core).

Tasks are enqueued one at a time at a steady rate while a worker runs in a
thread of this process; each task returns the time it started running.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from benchmarks.harness import ray_cluster, report, setup_django


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="tasks enqueued per second")
    args = parser.parse_args()
    setup_django()
    from django.db import connection
    from django.tasks import default_task_backend

    from benchmarks.tasks import stamp
    from django_ray.models import TaskExecution
    from django_ray.runtime.core import RayCoreDispatcher
    from django_ray.worker.loop import Worker, WorkerOptions

    with ray_cluster():
        TaskExecution.objects.all().delete()
        stop = threading.Event()
        worker = Worker(
            WorkerOptions(
                queues=("default",), concurrency=16, heartbeat_seconds=15, lease_seconds=60
            ),
            RayCoreDispatcher(),
        )

        def run() -> None:
            try:
                worker.run(stop)
            finally:
                connection.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        stamp.enqueue()  # warm a Ray worker process
        time.sleep(3)
        ids = []
        for _ in range(args.n):
            ids.append(stamp.enqueue().id)
            time.sleep(1 / args.rate)
        deadline = time.monotonic() + 60
        while TaskExecution.objects.filter(pk__in=ids, state="SUCCESSFUL").count() < args.n:
            assert time.monotonic() < deadline, "tasks did not finish"
            time.sleep(0.1)
        stop.set()
        thread.join()
        to_start, to_finish = [], []
        for result_id in ids:
            result = default_task_backend.get_result(result_id)
            enqueued = result.enqueued_at.timestamp()
            to_start.append((result.return_value - enqueued) * 1000)
            to_finish.append((result.finished_at.timestamp() - enqueued) * 1000)
    start, finish = percentiles(to_start), percentiles(to_finish)
    report(
        "B2: latency, idle worker",
        [
            ("tasks, rate", f"{args.n}, {args.rate:g}/s"),
            ("enqueue-to-start p50/p95/p99 ms", "/".join(f"{start[k]:.1f}" for k in start)),
            ("enqueue-to-finish p50/p95/p99 ms", "/".join(f"{finish[k]:.1f}" for k in finish)),
            ("targets", "start p50 < 50 ms, p99 < 250 ms"),
        ],
        {"n": args.n, "rate": args.rate, "to_start_ms": start, "to_finish_ms": finish},
    )


if __name__ == "__main__":
    main()
