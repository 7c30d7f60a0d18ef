"""B4: Celery tasks through Redis under ``-P prefork -c 2`` and under ``-P django_ray -c 8``.

Each pool is a real ``celery worker`` process; N no-op tasks and then 200 tasks
that sleep 100 ms are sent and their results gathered. Same broker, same run.
The sleep batch's ideal is 200 x 0.1 s / concurrency. The CPU each group of
processes spent per no-op task is printed for both pools: on two cores, the
pool that spends more CPU per task cannot run more tasks per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from benchmarks.harness import ROOT, CpuMeter, ray_cluster, report, setup_django

CELERY = str(ROOT / ".venv" / "bin" / "celery")


def start_worker(pool: str, concurrency: int, env: dict[str, str]) -> subprocess.Popen:
    worker = subprocess.Popen(
        [CELERY, "-A", "benchmarks.celery_app", "worker", "-P", pool, "-c", str(concurrency),
         "-n", f"bench-{pool}@localhost", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    from benchmarks.celery_app import app

    deadline = time.monotonic() + 120
    while not app.control.ping(timeout=0.5, destination=[f"bench-{pool}@localhost"]):
        assert time.monotonic() < deadline, f"the {pool} worker did not start"
    return worker


def rate(task, n: int) -> float:
    started = time.perf_counter()
    results = [task.delay() for _ in range(n)]
    for result in results:
        result.get(timeout=600)
    return time.perf_counter() - started


def measure(
    pool: str, concurrency: int, n: int, env: dict[str, str], rounds: int
) -> tuple[list[float], CpuMeter, float]:
    """No-op rates (one per round, the last one's CPU) and the sleep batch's seconds."""
    from benchmarks.celery_app import nap, noop

    worker = start_worker(pool, concurrency, env)
    try:
        rate(noop, 200)  # warm up
        rates = []
        for _ in range(rounds):
            with CpuMeter() as cpu:
                rates.append(n / rate(noop, n))
        nap_seconds = rate(nap, 200)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
    return rates, cpu, nap_seconds


class Bare:
    """An actor that takes what the pool sends per task and runs nothing."""

    def run(self, packed: tuple) -> tuple[int, None, float]:
        return (0, None, 0.0)


def ray_round_trips(n: int, concurrency: int) -> tuple[float, CpuMeter]:
    """Ray's share alone: the pool's calls (one message's worth of arguments each, to
    ``concurrency`` actors, a new call as each ends) with nothing run and no Celery."""
    import uuid

    import ray
    from kombu.serialization import dumps

    from benchmarks.celery_app import app

    message = app.amqp.as_task_v2(
        str(uuid.uuid4()), "benchmarks.celery_app.noop", args=(), kwargs={}
    )
    content_type, encoding, body = dumps(message.body, serializer="json")
    request = {
        **message.headers,
        "properties": message.properties,
        "hostname": "bench@localhost",
        "delivery_info": {"exchange": "", "routing_key": "bench", "priority": 0},
    }
    packed = (
        "benchmarks.celery_app.noop",
        request["id"],
        request,
        body,
        content_type,
        encoding,
        None,
    )
    actors = [ray.remote(Bare).remote() for _ in range(concurrency)]
    ray.get([actor.run.remote(packed) for actor in actors])
    with CpuMeter() as cpu:
        started = time.perf_counter()
        in_flight = {actor.run.remote(packed): actor for actor in actors}
        for _ in range(n - concurrency):
            (done,), _ = ray.wait(list(in_flight), num_returns=1)
            actor = in_flight.pop(done)
            in_flight[actor.run.remote(packed)] = actor
        ray.get(list(in_flight))
        seconds = time.perf_counter() - started
    for actor in actors:
        ray.kill(actor)
    return n / seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="no-op runs per pool")
    args = parser.parse_args()
    setup_django()
    from tests.ray_cluster import ray_subprocess_env

    # The Celery app is not a Django project: neither the workers nor the Ray
    # cluster (whose workers inherit its environment) may see the benchmark's
    # settings, or Celery's Django fixup would run around every task on Ray and
    # not in prefork's children.
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    # Ray schedules by logical CPUs: 8 let 8 tasks that mostly wait run at once.
    with ray_cluster(num_cpus=8) as cluster:
        env = ray_subprocess_env(cluster) | {"PYTHONPATH": str(ROOT)}
        prefork_rates, prefork_cpu, prefork_nap = measure("prefork", 2, args.n, env, args.rounds)
        ray_rates, ray_cpu, ray_nap = measure("django_ray", 8, args.n, env, args.rounds)
        floor_rate, floor_cpu = ray_round_trips(args.n, 8)
    prefork_rate, ray_rate = statistics.median(prefork_rates), statistics.median(ray_rates)
    ideal_prefork, ideal_ray = 200 * 0.1 / 2, 200 * 0.1 / 8
    report(
        "B4: Celery pools",
        [
            (f"no-op x{args.n}, prefork -c 2", ", ".join(f"{r:,.0f}/s" for r in prefork_rates)),
            (f"no-op x{args.n}, django_ray -c 8", ", ".join(f"{r:,.0f}/s" for r in ray_rates)),
            ("no-op ratio of medians django_ray / prefork (target >= 1)",
             f"{ray_rate / prefork_rate:.2f}"),
            ("CPU per no-op task, prefork (last run)", prefork_cpu.describe(args.n)),
            ("CPU per no-op task, django_ray (last run)", ray_cpu.describe(args.n)),
            ("Ray alone: the pool's calls to 8 actors, nothing run", f"{floor_rate:,.0f}/s"),
            ("CPU per call, Ray alone", floor_cpu.describe(args.n)),
            ("200 x 100 ms, prefork -c 2", f"{prefork_nap:.1f} s (ideal {ideal_prefork:.1f} s)"),
            ("200 x 100 ms, django_ray -c 8", f"{ray_nap:.1f} s (ideal {ideal_ray:.1f} s)"),
            ("django_ray sleep batch / ideal (target <= 1.2)", f"{ray_nap / ideal_ray:.2f}"),
        ],
        {"n": args.n, "prefork_per_s": prefork_rates, "django_ray_per_s": ray_rates,
         "cpu_ms_per_task": {"prefork": prefork_cpu.per_task_ms(args.n),
                             "django_ray": ray_cpu.per_task_ms(args.n),
                             "ray_alone": floor_cpu.per_task_ms(args.n)},
         "ray_alone_per_s": floor_rate,
         "prefork_sleep_s": prefork_nap, "django_ray_sleep_s": ray_nap,
         "sleep_ratio_to_ideal": ray_nap / ideal_ray, "pid": os.getpid()},
    )  # fmt: skip


if __name__ == "__main__":
    main()
