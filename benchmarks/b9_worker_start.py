"""B9: how soon a freshly started worker runs its first task, with Ray already running.

A real ``manage.py django_ray_worker --ray-core`` process, and a real ``celery
worker -P django_ray`` process, each started with ``RAY_ADDRESS`` naming the
benchmark's local cluster and a task already waiting for it. The task records
when it started on its Ray worker; the time is from just before the worker
process is spawned. For the Django worker, where the time
goes: Python and Django set-up and the Ray connection (from the worker's own
"Ready" log line), the first claim (the row's ``started_at``), and the first
lease of a Ray worker process (from the claim to the task's start). Targets:
1.5 s for the Django worker, 2 s for the Celery pool.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

from benchmarks.harness import ROOT, ray_cluster, report, setup_django

READY = re.compile(r"Ready ([\d.]+) s after the process started: Python and Django ([\d.]+) s")


def django_worker(env: dict[str, str]) -> dict[str, float]:
    from benchmarks.tasks import stamp
    from django_ray.models import TaskExecution

    TaskExecution.objects.all().delete()
    result = stamp.enqueue()
    born = time.time()
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "django_ray_worker", "--ray-core", "-v", "2"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = None
        assert worker.stderr is not None
        for line in worker.stderr:
            if match := READY.search(line):
                ready = (float(match[1]), float(match[2]))
                break
        assert ready is not None, "the worker never logged that it was ready"
        deadline = time.monotonic() + 120
        while (result := stamp.get_result(result.id)).status != "SUCCESSFUL":
            assert time.monotonic() < deadline, "the first task never ran"
            time.sleep(0.01)
        claimed = TaskExecution.objects.get(pk=result.id).started_at.timestamp()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    ran = float(result.return_value)
    return {
        "first task": ran - born,
        "Python and Django": ready[1],
        "Ray connect": ready[0] - ready[1],
        "first claim": claimed - born - ready[0],
        "first lease of a Ray worker": ran - claimed,
    }


def celery_worker(env: dict[str, str]) -> float:
    from benchmarks.celery_app import app, stamp

    app.control.purge()
    result = stamp.delay()
    born = time.time()
    worker = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "celery"), "-A", "benchmarks.celery_app", "worker",
         "-P", "django_ray", "-c", "8", "-n", "bench-start@localhost", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ran = float(result.get(timeout=120))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return ran - born


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    setup_django()
    from tests.ray_cluster import ray_subprocess_env

    with ray_cluster() as cluster:
        env = ray_subprocess_env(cluster) | {"DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
        django_runs = [django_worker(env) for _ in range(args.rounds)]
        # The Celery app is not a Django project (see B4).
        celery_env = {k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}
        celery_env["PYTHONPATH"] = str(ROOT)
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        celery_runs = [celery_worker(celery_env) for _ in range(args.rounds)]
    phases = {name: statistics.median(run[name] for run in django_runs) for name in django_runs[0]}
    report(
        "B9: worker start, Ray already running",
        [
            ("Django worker: first task started, each run",
             ", ".join(f"{run['first task']:.2f} s" for run in django_runs)),
            ("  median (target <= 1.5 s)", f"{phases['first task']:.2f} s"),
            *((f"  {name}", f"{seconds:.2f} s") for name, seconds in phases.items()
              if name != "first task"),
            ("Celery -P django_ray: first task started, each run",
             ", ".join(f"{seconds:.2f} s" for seconds in celery_runs)),
            ("  median (target <= 2 s)", f"{statistics.median(celery_runs):.2f} s"),
        ],
        {"django": django_runs, "celery": celery_runs, "django_median": phases,
         "celery_median": statistics.median(celery_runs)},
    )  # fmt: skip


if __name__ == "__main__":
    main()
