"""Tasks of the bridge tests. Files under paths the tests pass in are how a task
proves where and how often it ran; flag files are how a test releases a task."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from tests.celery.app import app

WAIT_LIMIT = 60.0
IMPORTED_AT = time.time()  # when this process imported the module (a pool restart re-imports)
logger = get_task_logger(__name__)


def wait_for_flag(flag: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not Path(flag).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} never appeared")
        time.sleep(0.05)


def count_and_mark(marker_dir: str) -> int:
    """How many runs marked ``marker_dir`` before this one; marks it for this one."""
    directory = Path(marker_dir)
    directory.mkdir(parents=True, exist_ok=True)
    runs = len(list(directory.iterdir()))
    (directory / f"run-{runs}-{os.getpid()}").touch()
    return runs


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def pid() -> int:
    return os.getpid()


@app.task
def chatty(word: str) -> tuple[int, float]:
    """Logs through its task logger; returns its process and when it imported this module."""
    logger.info("chatty says %s", word)
    logger.debug("chatty whispers %s", word)
    if word == "warn":
        logger.warning("chatty warns", extra={"data": {"word": word, "pid": os.getpid()}})
    return os.getpid(), IMPORTED_AT


@app.task
def actor_id() -> str | None:
    """The Ray actor running this task (one of the pool's), or None for a plain Ray task."""
    import ray

    return ray.get_runtime_context().get_actor_id()


@app.task(ray_options={"num_cpus": 0.5})
def actor_id_with_options() -> str | None:
    return actor_id()


@app.task(bind=True)
def where(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    request = self.request
    return {
        "id": request.id,
        "retries": request.retries,
        "hostname": request.hostname,
        "routing_key": (request.delivery_info or {}).get("routing_key"),
        "is_eager": request.is_eager,
        "args": list(request.args),
        "kwargs": dict(request.kwargs),
        "pid": os.getpid(),
    }


@app.task(bind=True)
def retry_once(self: Any) -> int:
    if self.request.retries == 0:
        raise self.retry(countdown=1)
    return int(self.request.retries)


@app.task(autoretry_for=(ValueError,), retry_backoff=1, retry_jitter=False, max_retries=3)
def flaky(marker_dir: str, failures: int) -> int:
    runs = count_and_mark(marker_dir)
    if runs < failures:
        raise ValueError(f"failure {runs + 1} of {failures}")
    return runs


@app.task(bind=True)
def progress(self: Any, flag: str) -> str:
    self.update_state(state="PROGRESS", meta={"step": 1})
    wait_for_flag(flag)
    return "done"


@app.task(ignore_result=True)
def ignored(path: str) -> str:
    Path(path).write_text(str(os.getpid()))
    return "not stored"


@app.task
def wait(flag: str, pid_path: str | None = None) -> str:
    if pid_path:
        Path(pid_path).write_text(str(os.getpid()))
    wait_for_flag(flag)
    return "released"


@app.task(acks_late=True)
def wait_late(flag: str, pid_path: str | None = None) -> str:
    return wait(flag, pid_path)


@app.task(acks_late=True)
def count_then_wait(marker_dir: str, flag: str) -> int:
    runs = count_and_mark(marker_dir)
    wait_for_flag(flag)
    return runs


@app.task(time_limit=2)
def hard_limited(pid_path: str) -> str:
    Path(pid_path).write_text(str(os.getpid()))
    time.sleep(30)
    return "not reached"


@app.task(soft_time_limit=1)
def soft_limited() -> str:
    try:
        time.sleep(20)
    except SoftTimeLimitExceeded:
        return "soft limit raised in the task"
    return "not reached"


@app.task
def append(value: Any, path: str) -> None:
    with open(path, "a") as out:
        out.write(f"{value}\n")


@app.task
def append_pid(path: str) -> None:
    append(os.getpid(), path)


@app.task
def on_error(request: Any, exc: BaseException, traceback: str, path: str) -> None:
    Path(path).write_text(f"{request.id} {type(exc).__name__}: {exc}")


@app.task
def crash(marker_dir: str, crashes: int) -> int:
    """Kill this Ray worker process on the first ``crashes`` runs."""
    runs = count_and_mark(marker_dir)
    if runs < crashes:
        os.kill(os.getpid(), signal.SIGKILL)
    return runs


@app.task(acks_late=True, reject_on_worker_lost=True)
def crash_late(marker_dir: str, crashes: int) -> int:
    return crash(marker_dir, crashes)


@app.task
def django_connection_state() -> dict[str, Any]:
    """Whether this process's DB connection was closed before this task; opens it again."""
    from django.db import connection

    closed = connection.connection is None
    connection.ensure_connection()
    return {"pid": os.getpid(), "closed_at_start": closed}


def _write_signal(name: str, task_id: str | None) -> None:
    directory = os.environ.get("CELERY_BRIDGE_TEST_SIGNALS")
    if directory and task_id:
        with open(Path(directory) / task_id, "a") as out:
            out.write(f"{name} {os.getpid()}\n")


@signals.task_prerun.connect
def _on_prerun(task_id: str | None = None, **kwargs: Any) -> None:
    _write_signal("task_prerun", task_id)


@signals.task_postrun.connect
def _on_postrun(task_id: str | None = None, **kwargs: Any) -> None:
    _write_signal("task_postrun", task_id)


@signals.task_success.connect
def _on_success(sender: Any = None, **kwargs: Any) -> None:
    _write_signal("task_success", sender.request.id if sender else None)


@signals.task_failure.connect
def _on_failure(task_id: str | None = None, **kwargs: Any) -> None:
    _write_signal("task_failure", task_id)


@signals.worker_process_init.connect
def _on_process_init(**kwargs: Any) -> None:
    directory = os.environ.get("CELERY_BRIDGE_TEST_SIGNALS")
    if directory:
        (Path(directory) / f"process-init-{os.getpid()}").touch()


@app.task
def hold(flag: str | None = None) -> str:
    """Returns at once without ``flag``; else says it started (``flag``.started) and waits."""
    if flag:
        Path(f"{flag}.started").write_text(str(os.getpid()))
        wait_for_flag(flag)
    return "held"


@app.task
def gate(flag: str | None = None, value: int = 0) -> int:
    """``hold``'s twin, of another name (kind): returns ``value``."""
    hold(flag)
    return value


@app.task(acks_late=True)
def held_on_node(marker_dir: str, name: str) -> str:
    """Adds a line to ``marker_dir``/``name`` per run (its Ray node, process and actor),
    then waits for the flag ``marker_dir``/``name``.go; returns its Ray node."""
    import ray

    context = ray.get_runtime_context()
    node = context.get_node_id()
    with open(Path(marker_dir) / name, "a") as out:
        out.write(f"{node} {os.getpid()} {context.get_actor_id()}\n")
    wait_for_flag(str(Path(marker_dir) / f"{name}.go"))
    return str(node)
