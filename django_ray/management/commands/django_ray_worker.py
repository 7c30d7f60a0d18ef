"""``manage.py django_ray_worker``: parse arguments, build a Worker, run it."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.tasks import task_backends

from django_ray.addresses import SETTING
from django_ray.conf import get_settings
from django_ray.runtime.dispatcher import Dispatcher
from django_ray.worker.loop import Worker, WorkerOptions


class Command(BaseCommand):
    help = "Claim Django tasks from the database and run them on Ray."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="Queue to serve; repeat or separate with commas. "
            "Default: every queue of the backend's QUEUES.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="Tasks in flight at once (default: DJANGO_RAY['DEFAULT_CONCURRENCY']).",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--ray-core",
            action="store_const",
            const="ray_core",
            dest="runner",
            help="Run each task as a Ray Core task.",
        )
        mode.add_argument(
            "--ray-job",
            action="store_const",
            const="ray_job",
            dest="runner",
            help="Run each task as a Ray Job.",
        )
        parser.add_argument(
            "--address",
            help="Ray address; overrides DJANGO_RAY['RAY_ADDRESS'] (when both are unset, the "
            "RAY_ADDRESS environment variable is used, and else Ray starts in this process).",
        )
        parser.add_argument(
            "--backend", default="default", help="Alias in TASKS to serve (default: default)."
        )
        parser.add_argument(
            "--grace-seconds",
            type=float,
            default=30.0,
            help="On SIGTERM, how long Ray Core tasks in flight may finish before they are "
            "handed back to the queue (default 30). Ray Jobs are left running for adoption.",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="Serve this worker's Prometheus metrics on this port (0: any free port).",
        )
        parser.add_argument(
            "--metrics-address",
            default="127.0.0.1",
            help="Address for --metrics-port (default 127.0.0.1; 0.0.0.0 for every interface).",
        )
        parser.add_argument(
            "--schedule",
            action="store_true",
            help="Also enqueue the runs of DJANGO_RAY['SCHEDULE'] as they come due (any number "
            "of workers may: each due time is enqueued once).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once no claimable task is left and nothing is in flight.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        began = time.time()
        _show_worker_logs(options["verbosity"])
        settings = get_settings()
        backend = task_backends[options["backend"]]
        queues = _queues(options["queues"], backend.queues)
        concurrency = options["concurrency"]
        if concurrency is None:
            concurrency = settings.default_concurrency
        if concurrency < 1:
            raise CommandError(f"--concurrency must be at least 1; got {concurrency}.")
        runner = options["runner"] or settings.runner
        concurrency = _capped(concurrency, runner, settings)
        unknown = sorted(set(queues) - backend.queues) if backend.queues else []
        if unknown:
            raise CommandError(
                f"Queue(s) {', '.join(unknown)} are not in TASKS[{options['backend']!r}]['QUEUES'] "
                f"({', '.join(sorted(backend.queues))})."
            )
        address = _address(options["address"], settings.ray_address)
        worker = Worker(
            WorkerOptions(
                queues=tuple(queues),
                concurrency=concurrency,
                heartbeat_seconds=settings.worker_heartbeat_seconds,
                lease_seconds=settings.worker_lease_seconds,
                backend=options["backend"],
                ray_address=address,
                burst=options["burst"],
                grace_seconds=options["grace_seconds"],
            ),
            _dispatcher(runner, address, settings),
        )
        _log_start(began)
        if options["metrics_port"] is not None:
            from django_ray.metrics import serve_metrics

            try:
                serve_metrics(options["metrics_port"], options["metrics_address"])
            except OSError as exc:
                raise CommandError(f"--metrics-port {options['metrics_port']}: {exc}") from exc
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            _stop_on_signals(stop)
        scheduler = _scheduler(settings) if options["schedule"] else None
        try:
            worker.run(stop)
        finally:
            if scheduler is not None:
                scheduler.stop()


def _scheduler(settings: Any) -> Any:
    """Start enqueueing the schedule's due runs (in a thread); None if it has no entries."""
    from django_ray.scheduling.entries import entries
    from django_ray.scheduling.scheduler import Scheduler

    scheduled = entries(settings.schedule)
    if not scheduled:
        logging.getLogger("django_ray.schedule").warning(
            "--schedule given, but DJANGO_RAY['SCHEDULE'] has no entries: nothing to enqueue"
        )
        return None
    scheduler = Scheduler(scheduled, grace_seconds=settings.worker_lease_seconds)
    scheduler.start()
    return scheduler


def _stop_on_signals(stop: threading.Event) -> None:
    """First SIGTERM/SIGINT: stop gracefully. Second: stop at once (the lease rules
    recover whatever is left)."""

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(f"Stopping at once on a second {signal.Signals(signum).name}")
        logging.getLogger("django_ray.worker").info(
            "%s received: stopping gracefully (send it again to stop at once)",
            signal.Signals(signum).name,
        )
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _address(given: str | None, configured: str | None) -> str | None:
    """--address, else the setting, else the environment's RAY_ADDRESS, else embedded."""
    from django_ray.runtime import connection

    try:
        return connection.choose_address(("--address", given), (SETTING, configured))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _dispatcher(runner: str, address: str | None, settings: Any) -> Dispatcher:
    """Connect to Ray the way the runner needs and build its dispatcher."""
    from django_ray.runtime import connection

    runtime_env = settings.ray_runtime_env
    if runner == "ray_job":
        from django_ray.runtime.jobs import RayJobDispatcher

        url, local = connection.jobs_api_url(address, runtime_env)
        delete = settings.ray_job_delete_finished
        if local:
            return RayJobDispatcher.for_local_cluster(url, runtime_env, delete_finished=delete)
        return RayJobDispatcher(url, runtime_env, delete_finished=delete)
    from django_ray.runtime.core import RayCoreDispatcher

    connection.connect(address, runtime_env)
    return RayCoreDispatcher(runtime_env, address=address)


def _capped(concurrency: int, runner: str, settings: Any) -> int:
    """A ray_job worker runs at most ``RAY_JOB_MAX_RUNNING`` jobs at once: each job has a
    supervisor actor on the cluster (tens of MB on the head node by default)."""
    cap = settings.ray_job_max_running
    if runner != "ray_job" or concurrency <= cap:
        return concurrency
    logging.getLogger("django_ray.worker").warning(
        "Running at most %d Ray jobs at once (DJANGO_RAY['RAY_JOB_MAX_RUNNING']), "
        "not the %d concurrency asks for",
        *(cap, concurrency),
    )
    return cap


def _log_start(began: float) -> None:
    """Where the worker's start went, for an operator whose workers start slowly."""
    now = time.time()
    age = _process_age()
    logging.getLogger("django_ray.worker").info(
        "Ready %.2f s after the process started: Python and Django %.2f s, Ray %.2f s",
        *(age, age - (now - began), now - began),
    )


def _process_age() -> float:
    """Seconds since this process started, to the kernel's clock tick (Linux), else since
    Python's ``time`` module could tell (psutil)."""
    try:
        stat = open(f"/proc/{os.getpid()}/stat").read()  # noqa: SIM115
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        import psutil  # a dependency of ray[default]

        return time.time() - psutil.Process().create_time()


def _queues(given: list[str] | None, configured: set[str]) -> list[str]:
    if not given:
        return sorted(configured) or ["default"]
    names = [name.strip() for value in given for name in value.split(",")]
    if any(not name for name in names):
        raise CommandError(f"--queue got an empty queue name in {given!r}.")
    return list(dict.fromkeys(names))


def _show_worker_logs(verbosity: int) -> None:
    """Print the worker's log lines unless the project's LOGGING already routes them."""
    logger = logging.getLogger("django_ray")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
