"""Tasks the test suite enqueues; each does something observable."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from django.tasks import TaskContext, task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="other")
def multiply(a: int, b: int) -> int:
    return a * b


@task(priority=10)
def echo(value: object) -> object:
    return value


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task(max_attempts=1)
def fail(message: str) -> None:
    raise ValueError(message)


@task
def always_fail(message: str) -> None:
    raise ValueError(message)


@task(max_attempts=5, retry_backoff_seconds=0)
def fail_until(directory: str, attempts: int) -> int:
    """Fail until this is the ``attempts``-th execution; count executions in files."""
    mark_execution.call(directory, "runs")
    runs = len(os.listdir(Path(directory) / "runs"))
    if runs < attempts:
        raise ConnectionError(f"run {runs} of {attempts}")
    return runs


@task
def returns_unserializable() -> object:
    return {1, 2, 3}


@task
def where_am_i() -> dict[str, object]:
    """Report the process the task ran in, to prove it ran on a Ray worker."""
    import ray

    task_id = ray.get_runtime_context().get_task_id() if ray.is_initialized() else None
    return {"pid": os.getpid(), "ray_task_id": task_id}


@task
def mark_execution(directory: str, token: str, seconds: float = 0) -> str:
    """Leave one file per execution, so a test can count how often each task ran."""
    time.sleep(seconds)
    marker = Path(directory) / token / uuid.uuid4().hex
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return token


@task(takes_context=True)
def whoami(context: TaskContext) -> dict[str, object]:
    return {"id": context.task_result.id, "attempt": context.attempt}


not_a_task = os.path.join


@task(max_attempts=2, retry_backoff_seconds=0)
def crash_worker(directory: str) -> None:
    """Kill the process running the task, as an out-of-memory kill or a segfault would."""
    mark_execution.call(directory, "crash")
    os._exit(1)


@task(num_cpus=2, resources={"slot": 1}, runtime_env={"env_vars": {"DJANGO_RAY_PROBE": "task"}})
def ray_view() -> dict[str, object]:
    """What Ray gave this task: its resources and its environment."""
    import ray

    assigned = ray.get_runtime_context().get_assigned_resources()
    return {
        "resources": {name: assigned[name] for name in sorted(assigned) if name != "memory"},
        "probe": os.environ.get("DJANGO_RAY_PROBE"),
        "global": os.environ.get("DJANGO_RAY_GLOBAL"),
    }


@task(max_attempts=2, retry_backoff_seconds=0)
def slow_first_time(directory: str, seconds: float) -> int:
    """Sleep on the first execution only; return how many executions there were."""
    mark_execution.call(directory, "slow")
    runs = len(os.listdir(Path(directory) / "slow"))
    if runs == 1:
        time.sleep(seconds)
    return runs


@task(max_attempts=1)
def big(size: int) -> str:
    return "x" * size


def _started(directory: str, token: str) -> None:
    started = Path(directory) / token / "started" / f"{os.getpid()}-{uuid.uuid4().hex}"
    started.parent.mkdir(parents=True, exist_ok=True)
    started.touch()


@task
def started_then_sleep(directory: str, token: str, seconds: float) -> str:
    """Leave a file ``token/started/PID-*`` when an execution starts (PID: the process
    running it) and one under ``token/done`` when it ends, sleeping in between."""
    _started(directory, token)
    time.sleep(seconds)
    mark_execution.call(str(Path(directory) / token), "done")
    return token


@task(max_attempts=1)
def started_then_spin(directory: str, token: str) -> None:
    """Leave the ``started`` file of :func:`started_then_sleep`, then loop in Python forever."""
    _started(directory, token)
    while True:
        pass


@task(max_attempts=1)
async def started_then_await(directory: str, token: str, seconds: float) -> str:
    """Leave the ``started`` file of :func:`started_then_sleep`, then await a long sleep."""
    _started(directory, token)
    await asyncio.sleep(seconds)
    return token


@task(max_attempts=1)
def shout_then_crash(lines: int) -> None:
    """Print many numbered lines, then die without recording: the job's log is long."""
    for number in range(lines):
        print(f"line {number} of {lines}")
    sys.stdout.flush()
    os._exit(3)
