"""B5: per-task overhead of the ray_job runner against raw Jobs API submissions.

Raw: N jobs submitted with one JobSubmissionClient, all with django-ray's own
entrypoint (for rows that do not exist, so it sets Django up, finds nothing to
run and exits: the same process cost as a no-op task), then polled until all
ended. django-ray: N no-op tasks run by a worker with --ray-job and concurrency
N. Same cluster, same run.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

from benchmarks.harness import ROOT, ray_cluster, report, setup_django

ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}
ENTRYPOINT = "python -m django_ray.runtime.job_entrypoint {} 1 {}"


def runtime_env() -> dict:
    return {
        "env_vars": {
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"],
        }
    }


def raw_jobs(url: str, n: int) -> float:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(url)
    started = time.perf_counter()
    ids = [
        client.submit_job(
            entrypoint=ENTRYPOINT.format(uuid.uuid4(), uuid.uuid4()),
            runtime_env=runtime_env(),
        )
        for _ in range(n)
    ]
    pending = set(ids)
    while pending:
        statuses = {job.submission_id: str(job.status.value) for job in client.list_jobs()}
        pending = {
            sid for sid in pending if statuses.get(sid) not in {"SUCCEEDED", "FAILED", "STOPPED"}
        }
        time.sleep(0.25)
    return (time.perf_counter() - started) / n


def django_ray_jobs(url: str, n: int) -> float:
    from benchmarks.tasks import noop
    from django_ray.models import TaskExecution
    from django_ray.runtime.jobs import RayJobDispatcher
    from django_ray.worker.loop import Worker, WorkerOptions

    TaskExecution.objects.all().delete()
    for _ in range(n):
        noop.enqueue()
    worker = Worker(
        WorkerOptions(
            queues=("default",), concurrency=n, heartbeat_seconds=15, lease_seconds=60, burst=True
        ),
        RayJobDispatcher(url, runtime_env(), poll_seconds=0.25),
    )
    started = time.perf_counter()
    worker.run()
    seconds = time.perf_counter() - started
    done = TaskExecution.objects.filter(state="SUCCESSFUL").count()
    assert done == n, f"only {done} of {n} SUCCESSFUL"
    return seconds / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=8)
    args = parser.parse_args()
    setup_django()
    with ray_cluster(num_cpus=4) as cluster:
        raw_jobs(cluster.dashboard_url, 2)  # warm the runtime env and the job agent
        raw = raw_jobs(cluster.dashboard_url, args.n)
        ours = django_ray_jobs(cluster.dashboard_url, args.n)
        raw_again = raw_jobs(cluster.dashboard_url, args.n)
    raw_mean = (raw + raw_again) / 2
    report(
        "B5: Ray Jobs overhead",
        [
            ("jobs per batch", str(args.n)),
            ("raw Jobs API, s per job (before, after)", f"{raw:.2f}, {raw_again:.2f}"),
            ("django-ray --ray-job, s per task", f"{ours:.2f}"),
            ("overhead over raw (target < 20%)", f"{(ours / raw_mean - 1) * 100:+.0f}%"),
        ],
        {
            "n": args.n,
            "raw_s_per_job": [raw, raw_again],
            "django_ray_s_per_task": ours,
            "overhead": ours / raw_mean - 1,
        },
    )


if __name__ == "__main__":
    main()
