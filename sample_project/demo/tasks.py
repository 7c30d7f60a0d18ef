"""The sample's tasks: CPU-bound, I/O-bound, one that asks Ray for resources, and failures.

Each is an ordinary Django task (``django.tasks.task``); the django-ray backend
runs it on Ray. Arguments and return values are JSON.
"""

import asyncio
import collections
import math
import os

from django.tasks import TaskContext, task


@task(queue_name="cpu")
def fibonacci(n: int) -> dict[str, int]:
    """CPU-bound: the n-th Fibonacci number, and the pid of the Ray worker that computed it."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return {"n": n, "value": a, "pid": os.getpid()}


# Ray schedules this only where a CPU and 256 MiB of memory are free, and keeps
# them reserved while it runs (``memory`` is Ray's logical memory resource).
@task(queue_name="cpu", num_cpus=1, memory=256 * 1024 * 1024)
def count_primes(limit: int) -> dict[str, int]:
    """CPU- and memory-bound: how many primes are below ``limit`` (a sieve of Eratosthenes)."""
    sieve = bytearray([1]) * limit
    sieve[:2] = bytes(min(limit, 2))  # 0 and 1 are not prime
    for n in range(2, math.isqrt(max(limit - 1, 0)) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    largest = next((n for n in range(limit - 1, 1, -1) if sieve[n]), None)
    return {"limit": limit, "primes": sum(sieve), "largest": largest}


@task
def word_count(text: str) -> dict[str, int]:
    """The three most common words of ``text``."""
    return dict(collections.Counter(text.lower().split()).most_common(3))


@task
async def slow_greeting(name: str, seconds: float = 0.2) -> str:
    """I/O-bound: waits the way a call to a slow service would, without holding a CPU."""
    await asyncio.sleep(seconds)
    return f"Hello, {name}!"


@task
def task_counts() -> dict[str, int]:
    """Database I/O from inside Ray: the sample's task executions per state."""
    from django.db.models import Count

    from django_ray.models import TaskExecution

    rows = TaskExecution.objects.order_by().values_list("state").annotate(n=Count("pk"))
    return dict(rows)


@task(priority=10)
def ratio(a: float, b: float) -> float:
    """Fails with ZeroDivisionError when ``b`` is 0 (the sample runs each task once)."""
    return a / b


@task(takes_context=True, max_attempts=3, retry_backoff_seconds=0)
def flaky(context: TaskContext, failures: int) -> dict[str, int]:
    """Fails its first ``failures`` attempts, then succeeds: watch the retry policy work."""
    if context.attempt <= failures:
        raise ConnectionError(f"attempt {context.attempt}: the service did not answer")
    return {"attempt": context.attempt}
