"""B10: what polling Ray Jobs costs as the cluster's job history grows.

Eight real jobs run (``sleep``) and a ``ray_job`` dispatcher monitors them. Each round
times one poll of the dispatcher with all eight jobs due (it asks after each by id; in
a worker, a job that has run a while is due only every few seconds) and, side by side,
one ``list_jobs()`` call (what a poll cost before: Ray returns every job it ever
ran). Both are measured with an empty history, then again after ``--history`` finished
jobs (2,000 by default) are added to it, in the same run on the same cluster.

The finished jobs are written where Ray's job manager keeps its history (the GCS
key-value store, through Ray's own ``JobInfoStorageClient``) rather than run: running
2,000 jobs takes this machine about an hour. ``--real`` finished jobs are also run for
real first, so the history holds drivers too.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from benchmarks.harness import ray_cluster, report, setup_django

RUNNING = 8


def timed(call, rounds: int) -> float:
    """Median milliseconds of ``call()`` over ``rounds`` calls."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def add_history(gcs_address: str, count: int) -> None:
    from ray._raylet import GcsClient
    from ray.dashboard.modules.job.common import JobInfo, JobInfoStorageClient, JobStatus

    storage = JobInfoStorageClient(GcsClient(address=gcs_address))
    now = int(time.time() * 1000)

    async def put_all() -> None:
        for number in range(count):
            info = JobInfo(
                status=JobStatus.SUCCEEDED,
                entrypoint=f"python -m django_ray.runtime.job_entrypoint {uuid.uuid4()} 1 x",
                message="Job finished successfully.",
                start_time=now - 5000,
                end_time=now - 3000,
                metadata={"django_ray_task": "app.tasks.finished", "django_ray_attempt": "1"},
                driver_exit_code=0,
            )
            await storage.put_info(f"django-ray-history-{number}-1", info)

    asyncio.run(put_all())


def wait_until(client, ids: list[str], states: set[str]) -> None:
    deadline = time.monotonic() + 300
    while any(str(client.get_job_status(sid).value) not in states for sid in ids):
        assert time.monotonic() < deadline, f"jobs never reached {states}"
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history", type=int, default=2000)
    parser.add_argument("--real", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    setup_django()
    from ray.job_submission import JobSubmissionClient

    from django_ray.runtime.job import Job
    from django_ray.runtime.jobs import RayJobDispatcher

    with ray_cluster(num_cpus=2) as cluster:
        client = JobSubmissionClient(cluster.dashboard_url)
        done = [client.submit_job(entrypoint="true") for _ in range(args.real)]
        wait_until(client, done, {"SUCCEEDED"})
        running = [client.submit_job(entrypoint="sleep 600") for _ in range(RUNNING)]
        wait_until(client, running, {"RUNNING"})
        dispatcher = RayJobDispatcher(cluster.dashboard_url)
        for number, sid in enumerate(running):
            job = Job(execution_id=str(number), attempt=1, task_path="t", args=[], kwargs={})
            dispatcher._in_flight[sid] = job

        def poll_all() -> None:
            dispatcher._next_check.clear()  # every job due
            assert dispatcher.poll() == []

        def measure() -> tuple[float, float, int]:
            listed = len(client.list_jobs())
            poll_all()
            return timed(poll_all, args.rounds), timed(client.list_jobs, args.rounds), listed

        poll_empty, list_empty, listed_empty = measure()
        add_history(cluster.address, args.history)
        poll_full, list_full, listed_full = measure()
        for sid in running:
            client.stop_job(sid)
    report(
        "B10: Ray Jobs polling against the job history",
        [
            ("jobs in flight (polled by id)", str(RUNNING)),
            ("jobs Ray lists: empty history, full", f"{listed_empty}, {listed_full}"),
            ("django-ray poll, ms: empty, full", f"{poll_empty:.1f}, {poll_full:.1f}"),
            ("django-ray poll, full over empty", f"{poll_full / poll_empty:.2f}"),
            ("list_jobs(), ms: empty, full", f"{list_empty:.1f}, {list_full:.1f}"),
            ("list_jobs(), full over empty", f"{list_full / list_empty:.2f}"),
            ("list_jobs() over django-ray poll, full", f"{list_full / poll_full:.2f}"),
        ],
        {
            "in_flight": RUNNING,
            "history": args.history,
            "real_finished": args.real,
            "listed": [listed_empty, listed_full],
            "poll_ms": [poll_empty, poll_full],
            "list_jobs_ms": [list_empty, list_full],
        },
    )


if __name__ == "__main__":
    main()
