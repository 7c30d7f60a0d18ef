"""What the sample's page and API may enqueue: a fixed list of tasks, each argument checked.

Nothing outside this catalog can be enqueued from the web, and every argument
has a type and bounds, so a request cannot ask for an hour of CPU.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.tasks import Task

from demo import tasks


class InvalidArguments(ValueError):
    """Arguments that do not fit the task's parameters; ``problems`` maps name to sentence."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in problems.items()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    name: str
    kind: type  # int, float or str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 200

    def parse(self, raw: Any) -> Any:
        """``raw`` (a form's string or a JSON value) as this parameter's type, or ValueError."""
        if self.kind is str:
            if isinstance(raw, str) and len(raw) <= self.max_length:
                return raw
            raise ValueError(f"must be text of at most {self.max_length} characters")
        number = _number(raw)
        if self.kind is int:
            if not number.is_integer():
                raise ValueError(f"must be a whole number; got {raw!r}")
            number = int(number)
        if self.minimum is not None and number < self.minimum:
            raise ValueError(f"must be at least {self.minimum}; got {number}")
        if self.maximum is not None and number > self.maximum:
            raise ValueError(f"must be at most {self.maximum}; got {number}")
        return number


def _number(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"must be a number; got {raw!r}")
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"must be a number; got {raw!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number; got {raw!r}")
    return number


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    task: Task
    summary: str
    params: tuple[Param, ...] = ()

    def arguments(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the task: ``given`` parsed, defaults filled in."""
        problems, values = {}, {}
        for unknown in sorted(set(given) - {param.name for param in self.params}):
            problems[unknown] = "is not a parameter of this task"
        for param in self.params:
            try:
                values[param.name] = param.parse(given.get(param.name, param.default))
            except ValueError as exc:
                problems[param.name] = str(exc)
        if problems:
            raise InvalidArguments(problems)
        return values


CATALOG: dict[str, Entry] = {
    "fibonacci": Entry(
        task=tasks.fibonacci,
        summary="CPU-bound: the n-th Fibonacci number (queue cpu).",
        params=(Param(name="n", kind=int, default=90, minimum=0, maximum=10_000),),
    ),
    "count_primes": Entry(
        task=tasks.count_primes,
        summary="Asks Ray for 1 CPU and 256 MiB: primes below a limit (queue cpu).",
        params=(Param(name="limit", kind=int, default=2_000_000, minimum=2, maximum=50_000_000),),
    ),
    "slow_greeting": Entry(
        task=tasks.slow_greeting,
        summary="I/O-bound (async): waits, then greets.",
        params=(
            Param(name="name", kind=str, default="Ray", max_length=100),
            Param(name="seconds", kind=float, default=1.0, minimum=0, maximum=30),
        ),
    ),
    "task_counts": Entry(
        task=tasks.task_counts,
        summary="Database I/O from inside Ray: task executions per state.",
    ),
    "word_count": Entry(
        task=tasks.word_count,
        summary="The three most common words of a text.",
        params=(
            Param(name="text", kind=str, default="the cat saw the other cat", max_length=5000),
        ),
    ),
    "ratio": Entry(
        task=tasks.ratio,
        summary="Fails with ZeroDivisionError when b is 0.",
        params=(
            Param(name="a", kind=float, default=22.0),
            Param(name="b", kind=float, default=0.0),
        ),
    ),
    "flaky": Entry(
        task=tasks.flaky,
        summary="Fails its first attempts, then succeeds (up to 3 attempts).",
        params=(Param(name="failures", kind=int, default=1, minimum=0, maximum=3),),
    ),
}
