"""A few realistic tasks: CPU-bound, text processing, async I/O, and one that fails."""

import asyncio
import collections
import os

from django.tasks import task


@task(queue_name="cpu")
def fibonacci(n: int) -> dict[str, int]:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return {"n": n, "value": a, "pid": os.getpid()}


@task
def word_count(text: str) -> dict[str, int]:
    return dict(collections.Counter(text.lower().split()).most_common(3))


@task
async def slow_greeting(name: str, seconds: float = 0.2) -> str:
    await asyncio.sleep(seconds)
    return f"Hello, {name}!"


@task(priority=10)
def ratio(a: float, b: float) -> float:
    return a / b
