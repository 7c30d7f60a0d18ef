"""B8: a backlog of no-op tasks written with enqueue_many(), drained by one ray_core worker.

The backlog is enqueued in chunks (one INSERT each), then one in-process worker
(as in B1, at the concurrency docs/performance.md suggests for short tasks)
runs it to the end. A few warm-up tasks of higher priority go first, in the same
run, so that Ray's start of its worker processes is not in the first tenth.
Read from the backlog rows' ``finished_at``: the drain rate over each tenth of
the backlog, in the order the tasks finished. Timed around
``django_ray.lifecycle.attempts.claim``: each claim statement, grouped by how
much of the backlog was still waiting. Neither should slow down as the backlog
shrinks: the ratios last tenth / first tenth should stay near 1.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.harness import CpuMeter, burst_worker, ray_cluster, report, setup_django

TENTHS = 10


BACKLOG, WARMUP = 0, 10  # priorities


def enqueue(n: int, chunk: int, priority: int = BACKLOG) -> float:
    from benchmarks.tasks import noop

    task = noop.using(priority=priority)
    started = time.perf_counter()
    for offset in range(0, n, chunk):
        task.enqueue_many([((), {})] * min(chunk, n - offset))
    return n / (time.perf_counter() - started)


class ClaimTimer:
    """Wraps ``attempts.claim`` while the ``with`` block runs: per call, how many rows were
    waiting before it, how many it claimed and how long it took."""

    def __init__(self, rows: int) -> None:
        self.waiting = rows
        self.calls: list[tuple[int, int, float]] = []

    def __enter__(self) -> ClaimTimer:
        from django_ray.lifecycle import attempts

        self._claim = original = attempts.claim

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            rows = original(*args, **kwargs)
            self.calls.append((self.waiting, len(rows), time.perf_counter() - started))
            self.waiting -= len(rows)
            return rows

        attempts.claim = timed
        return self

    def __exit__(self, *exc: object) -> None:
        from django_ray.lifecycle import attempts

        attempts.claim = self._claim

    def per_tenth(self, backlog: int) -> list[tuple[int, float]]:
        """For each tenth of the backlog (by its rows still waiting, once the warm-up rows
        were claimed): the claims that took rows, and their mean time in milliseconds."""
        tenths: list[list[float]] = [[] for _ in range(TENTHS)]
        for waiting, claimed, seconds in self.calls:
            if claimed and waiting <= backlog:
                done = backlog - waiting
                tenths[min(done * TENTHS // backlog, TENTHS - 1)].append(seconds * 1000)
        return [(len(times), sum(times) / len(times) if times else 0.0) for times in tenths]


def drain(rows: int, concurrency: int) -> tuple[CpuMeter, ClaimTimer]:
    worker = burst_worker(concurrency)
    with ClaimTimer(rows) as claims, CpuMeter() as cpu:
        worker.run()
    return cpu, claims


def backlog_rates(n: int) -> tuple[float, list[float]]:
    """Tasks per second from the backlog's first start to its last end, and over each tenth
    of it, in the order its tasks finished."""
    from django.db.models import Min

    from django_ray.models import TaskExecution

    backlog = TaskExecution.objects.filter(state="SUCCESSFUL", priority=BACKLOG)
    finished = list(backlog.order_by("finished_at").values_list("finished_at", flat=True))
    assert len(finished) == n, f"only {len(finished)} of {n} tasks SUCCESSFUL"
    first_start = backlog.aggregate(first=Min("started_at"))["first"]
    bounds = [finished[min(k * n // TENTHS, n - 1)] for k in range(TENTHS + 1)]
    rates = []
    for k in range(TENTHS):
        seconds = (bounds[k + 1] - bounds[k]).total_seconds()
        rows = (k + 1) * n // TENTHS - k * n // TENTHS
        rates.append(rows / seconds if seconds > 0 else float("inf"))
    return n / (finished[-1] - first_start).total_seconds(), rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=10_000, help="calls per enqueue_many()")
    parser.add_argument("--concurrency", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=2000, help="tasks run first, unmeasured")
    args = parser.parse_args()
    setup_django()
    from django_ray.models import TaskExecution

    TaskExecution.objects.all().delete()
    enqueue_rate = enqueue(args.n, args.chunk)
    enqueue(args.warmup, args.chunk, priority=WARMUP)
    with ray_cluster():
        cpu, claims = drain(args.n + args.warmup, args.concurrency)
    drain_rate, tenths = backlog_rates(args.n)
    claim_tenths = claims.per_tenth(args.n)
    first_claim, last_claim = claim_tenths[0][1], claim_tenths[-1][1]
    report(
        "B8: draining a bulk backlog",
        [
            ("tasks, chunk per enqueue_many()", f"{args.n:,}, {args.chunk:,}"),
            ("enqueue_many()", f"{enqueue_rate:,.0f} rows/s"),
            (
                f"drain, one ray_core worker, concurrency {args.concurrency} (after "
                f"{args.warmup:,} warm-up tasks)",
                f"{drain_rate:,.0f}/s",
            ),
            ("drain per tenth of the backlog", ", ".join(f"{rate:,.0f}" for rate in tenths)),
            ("drain ratio last tenth / first tenth", f"{tenths[-1] / tenths[0]:.2f}"),
            (
                "claim statements per tenth: count x mean ms",
                ", ".join(f"{count}x{ms:.1f}" for count, ms in claim_tenths),
            ),
            ("claim ratio last tenth / first tenth", f"{last_claim / first_claim:.2f}"),
            ("CPU per task while draining (warm-up too)", cpu.describe(args.n + args.warmup)),
        ],
        {
            "n": args.n,
            "chunk": args.chunk,
            "concurrency": args.concurrency,
            "enqueue_many_per_s": enqueue_rate,
            "drain_per_s": drain_rate,
            "drain_per_tenth_per_s": tenths,
            "claims_per_tenth": [{"count": c, "mean_ms": ms} for c, ms in claim_tenths],
            "claim_calls": [list(call) for call in claims.calls],
            "warmup": args.warmup,
            "cpu_ms_per_task": cpu.per_task_ms(args.n + args.warmup),
        },
    )


if __name__ == "__main__":
    main()
