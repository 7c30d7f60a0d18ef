"""B7: the same no-op tasks through django-tasks-db and through django-ray, on one database.

django-tasks-db (the ``bench`` extra) is the closest peer: a Django Tasks backend
that keeps tasks as rows and runs them in its own ``db_worker`` process. Each
round enqueues N tasks on each system with single ``enqueue()`` calls, then
drains them with a real worker process of that system (``db_worker --batch``;
``django_ray_worker --ray-core --burst`` on this run's Ray cluster); the two
systems alternate within a round, and swap places in the next.

Measured for each: the enqueue rate; the drain rate from the worker process's
start to the last task's end (so it includes the worker's start); the steady rate
from the first task's start to the last task's end, read from the rows' own
timestamps; and the worker's start, from its process start to the first task
started. django-ray's ``enqueue_many()`` rate is measured on its own.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.harness import ROOT, CpuMeter, ray_cluster, report, setup_django

SETTINGS = "benchmarks.settings_peers"
CHART = ROOT / "docs" / "images" / "peers.png"
OURS, PEER = "django-ray", "django-tasks-db"
RATES = ("enqueue", "drain", "steady")


def enqueue_rate(system: str, n: int) -> float:
    from benchmarks import peer_tasks, tasks

    task = tasks.noop if system == OURS else peer_tasks.noop
    started = time.perf_counter()
    for _ in range(n):
        task.enqueue()
    return n / (time.perf_counter() - started)


def enqueue_many_rate(n: int) -> float:
    from benchmarks.tasks import noop
    from django_ray.models import TaskExecution

    calls = [((), {})] * n
    started = time.perf_counter()
    noop.enqueue_many(calls)
    seconds = time.perf_counter() - started
    TaskExecution.objects.all().delete()
    return n / seconds


def worker_command(system: str, cluster: Any, concurrency: int) -> list[str]:
    if system == OURS:
        return ["django_ray_worker", "--ray-core", "--burst", "--address", cluster.address,
                "--concurrency", str(concurrency)]  # fmt: skip
    return ["db_worker", "--batch", "--backend", "peer", "--no-startup-delay", "--verbosity", "0"]


def drain(system: str, n: int, cluster: Any, concurrency: int) -> dict[str, float]:
    """Run the system's worker as a process until it exits, having run all ``n`` tasks."""
    from tests.ray_cluster import ray_subprocess_env

    env = ray_subprocess_env(cluster) | {"DJANGO_SETTINGS_MODULE": SETTINGS}
    command = [sys.executable, "-m", "django", *worker_command(system, cluster, concurrency)]
    with tempfile.TemporaryFile() as errors, CpuMeter() as cpu:
        started = time.time()
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=errors)  # fmt: skip
        if worker.wait(timeout=600) != 0:
            errors.seek(0)
            raise RuntimeError(f"{system} worker exited {worker.returncode}: {errors.read()!r}")
    first_start, last_end, done = timestamps(system)
    assert done == n, f"{system}: {done} of {n} tasks successful"
    began = datetime.datetime.fromtimestamp(started, datetime.UTC)
    return {
        "drain": n / (last_end - began).total_seconds(),
        "steady": n / (last_end - first_start).total_seconds(),
        "worker_start_s": (first_start - began).total_seconds(),
        "cpu_ms_per_task": sum(cpu.per_task_ms(n).values()),
    }


def timestamps(system: str) -> tuple[datetime.datetime, datetime.datetime, int]:
    """The first task's start, the last one's end, and how many ended successfully."""
    from django.db.models import Count, Max, Min, Q
    from django_tasks_db.models import DBTaskResult

    from django_ray.models import TaskExecution

    if system == OURS:
        rows, ok = TaskExecution.objects.all(), Q(state="SUCCESSFUL")
    else:
        rows, ok = DBTaskResult.objects.all(), Q(status="SUCCESSFUL")
    found = rows.aggregate(first=Min("started_at"), last=Max("finished_at"), ok=Count("pk", ok))
    return found["first"], found["last"], found["ok"]


def empty_tables() -> None:
    from django_tasks_db.models import DBTaskResult

    from django_ray.models import TaskExecution

    TaskExecution.objects.all().delete()
    DBTaskResult.objects.all().delete()


def chart(medians: dict[str, dict[str, float]], many_rate: float, n: int) -> None:
    """Grouped bars: each rate for both systems, and the workers' start beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rates, start) = plt.subplots(
        1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [3, 1]}
    )
    labels = ["enqueue()", "drain, with\nworker start", "steady"]
    width = 0.38
    for offset, system in ((-width / 2, OURS), (width / 2, PEER)):
        values = [medians[system][rate] for rate in RATES]
        bars = rates.bar([i + offset for i in range(3)], values, width, label=system)
        rates.bar_label(bars, fmt="{:,.0f}", fontsize=8)
    rates.set_xticks(range(3), labels)
    rates.set_ylabel("tasks per second")
    rates.set_title(f"{n:,} no-op tasks, one worker each (median of rounds)")
    rates.legend()
    values = [medians[system]["worker_start_s"] for system in (OURS, PEER)]
    bars = start.bar([OURS, PEER], values, color=["C0", "C1"])
    start.bar_label(bars, fmt="{:.2f} s", fontsize=8)
    start.set_ylabel("seconds")
    start.set_title("worker start")
    start.tick_params(axis="x", labelsize=8)
    figure.text(
        0.01, 0.01,
        f"django-ray enqueue_many(): {many_rate:,.0f} rows/s. Same PostgreSQL database, "
        "same machine, one run (benchmarks/b7_peers.py).",
        fontsize=8,
    )  # fmt: skip
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    CHART.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(CHART, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=200, help="django-ray's worker")
    parser.add_argument("--many", type=int, default=20000, help="rows for enqueue_many()")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    setup_django()
    runs: dict[str, list[dict[str, float]]] = {OURS: [], PEER: []}
    with ray_cluster() as cluster:
        for round_ in range(args.rounds):
            order = (OURS, PEER) if round_ % 2 == 0 else (PEER, OURS)
            empty_tables()
            rates = {system: enqueue_rate(system, args.n) for system in order}
            for system in order:
                drained = drain(system, args.n, cluster, args.concurrency)
                runs[system].append({"enqueue": rates[system], **drained})
        empty_tables()
        many = statistics.median(enqueue_many_rate(args.many) for _ in range(3))
    medians = {
        system: {key: statistics.median(run[key] for run in done) for key in done[0]}
        for system, done in runs.items()
    }
    chart(medians, many, args.n)
    rows = [("tasks per round, rounds", f"{args.n}, {args.rounds}")]
    for key, unit in (*((rate, "/s") for rate in RATES), ("worker_start_s", " s")):
        for system in (OURS, PEER):
            each = ", ".join(f"{run[key]:,.2f}{unit}" for run in runs[system])
            rows.append((f"{key} {system}", each))
        ratio = medians[OURS][key] / medians[PEER][key]
        rows.append((f"{key} ratio of medians {OURS} / {PEER}", f"{ratio:.2f}"))
    for system in (OURS, PEER):
        cpu = statistics.median(run["cpu_ms_per_task"] for run in runs[system])
        rows.append((f"CPU per task while draining, {system}", f"{cpu:.2f} ms"))
    rows.append((f"enqueue_many() {OURS}, {args.many:,} rows", f"{many:,.0f} rows/s"))
    rows.append(("chart", str(CHART.relative_to(ROOT))))
    report(
        "B7: django-ray against django-tasks-db",
        rows,
        {"n": args.n, "rounds": runs, "medians": medians, "enqueue_many_per_s": many},
    )


if __name__ == "__main__":
    main()
