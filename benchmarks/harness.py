"""What every benchmark needs: its own PostgreSQL database, a local Ray cluster, a report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def setup_django() -> None:
    """Point Django at the benchmark settings, create the database if needed, migrate it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    # Ray only on loopback, no token auth for this private cluster (read at import).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sys.path.insert(0, str(ROOT))
    import django
    import psycopg

    from benchmarks import settings

    database = settings.DATABASES["default"]
    with psycopg.connect(
        host=database["HOST"],
        port=database["PORT"],
        user=database["USER"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [database["NAME"]]
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{database["NAME"]}"')
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def ray_cluster(num_cpus: int = 2) -> Iterator[Any]:
    """A private local Ray cluster on loopback, this process connected to it."""
    from tests.ray_cluster import LocalRayCluster

    cluster = LocalRayCluster()
    cluster.start(num_cpus=num_cpus)
    try:
        from django_ray.runtime.connection import connect

        connect(cluster.address, {})
        yield cluster
    finally:
        import ray

        ray.shutdown()
        cluster.stop()


def burst_worker(concurrency: int, dispatcher: Any = None) -> Any:
    """A ``ray_core`` worker in this process that stops once no task is left (a new
    dispatcher unless one is given, to keep across runs as a worker process would)."""
    from django_ray.runtime.core import RayCoreDispatcher
    from django_ray.worker.loop import Worker, WorkerOptions

    return Worker(
        WorkerOptions(
            queues=("default",),
            concurrency=concurrency,
            heartbeat_seconds=15,
            lease_seconds=60,
            burst=True,
            busy_wait_seconds=0.05,
        ),
        dispatcher or RayCoreDispatcher(),
    )


# Which processes a CPU reading adds up, by what /proc says of them: (label, test).
PROCESS_GROUPS: tuple[tuple[str, Any], ...] = (
    ("this process", lambda pid, name, cmd: pid == os.getpid()),
    ("Ray workers", lambda pid, name, cmd: cmd.startswith("ray::")),
    ("raylet, GCS", lambda pid, name, cmd: name in {"raylet", "gcs_server"}),
    ("PostgreSQL", lambda pid, name, cmd: name == "postgres"),
    ("Redis", lambda pid, name, cmd: name == "redis-server"),
    ("Celery worker", lambda pid, name, cmd: "celery" in name or " worker " in cmd),
)


def _cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process's CPU seconds (user + system) and its group, read from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    seen: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        group = next((g for g, test in PROCESS_GROUPS if test(pid, name, cmd)), "other")
        seen[pid] = (group, (int(fields[11]) + int(fields[12])) / ticks)
    return seen


class CpuMeter:
    """CPU seconds spent by each group of processes while the ``with`` block ran.

    On a 2-core machine throughput is bounded by CPU per task: these readings
    say where each side of a comparison spends it.
    """

    def __enter__(self) -> CpuMeter:
        self._before = _cpu_by_process()
        self.seconds: dict[str, float] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        for pid, (group, seconds) in _cpu_by_process().items():
            used = seconds - self._before.get(pid, (group, 0.0))[1]
            if used > 0:
                self.seconds[group] = self.seconds.get(group, 0.0) + used

    def per_task_ms(self, tasks: int) -> dict[str, float]:
        ordered = sorted(self.seconds.items(), key=lambda item: -item[1])
        return {group: round(seconds / tasks * 1000, 3) for group, seconds in ordered}

    def describe(self, tasks: int) -> str:
        per_task = self.per_task_ms(tasks)
        parts = [f"{group} {ms:.2f}" for group, ms in per_task.items() if ms >= 0.01]
        return f"{sum(per_task.values()):.2f} ms ({', '.join(parts)})"


@contextmanager
def sampled(path: Path | None, rate: int = 200) -> Iterator[None]:
    """Sample this process's Python stacks with py-spy (installed with ``ray[default]``)
    while the block runs, into ``path`` (collapsed stacks); nothing when ``path`` is None."""
    if path is None:
        yield
        return
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(os.getpid()),
         "--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)  # let it attach
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def profile_summary(path: Path, root: str, top: int = 30) -> list[tuple[str, float]]:
    """The functions called under the frame named ``root``, by share of its samples
    (inclusive: a function's share counts what it called)."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        at = next((i for i, frame in enumerate(frames) if frame.startswith(root)), None)
        if at is None:
            continue
        total += int(samples)
        names = {frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] + ")"
                 for frame in frames[at + 1 :]}  # fmt: skip
        for name in names:
            counts[name] = counts.get(name, 0) + int(samples)
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return [(name, count / total) for name, count in ranked] if total else []


def report(name: str, rows: list[tuple[str, str]], data: dict[str, Any]) -> None:
    """Print a two-column table and write the numbers as JSON under benchmarks/results/."""
    width = max(len(label) for label, _ in rows)
    print(f"\n{name}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name.split(':')[0].lower()}.json"
    path.write_text(json.dumps({"benchmark": name, "measured_at": time.time(), **data}, indent=2))
    print(f"  (written to {path.relative_to(ROOT)})")
