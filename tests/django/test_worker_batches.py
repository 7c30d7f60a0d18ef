"""With many attempts in flight the worker records and claims in batches; with few,
it acts on each attempt as it ends."""

from __future__ import annotations

import pytest

from django_ray.models import TaskExecution
from django_ray.runtime.job import Job, Outcome
from django_ray.testing import InProcessDispatcher
from django_ray.worker.loop import Worker, WorkerOptions
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


class HeldDispatcher(InProcessDispatcher):
    """Keeps every job in flight until the test lets some of them end."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[Job] = []
        self.ended: list[Job] = []
        self.asked_at_least: list[int] = []

    @property
    def in_flight(self) -> int:
        return len(self.jobs)

    def submit(self, job: Job) -> str:
        self.jobs.append(job)
        return f"held-{len(self.jobs)}"

    def flush(self) -> dict[str, str]:
        return {}

    def end(self, count: int) -> None:
        self.ended += self.jobs[:count]
        del self.jobs[:count]

    def wait(self, timeout: float, at_least: int = 1) -> list[Outcome]:
        self.asked_at_least.append(at_least)
        ended, self.ended = self.ended, []
        return [Outcome(execution_id=j.execution_id, attempt=j.attempt, value=1) for j in ended]

    def cancel(self, execution_id: str) -> None:
        pass


def worker(dispatcher: HeldDispatcher, concurrency: int) -> Worker:
    options = WorkerOptions(
        queues=("default",), concurrency=concurrency, heartbeat_seconds=5, lease_seconds=30
    )
    return Worker(options, dispatcher)


def test_a_busy_worker_refills_in_batches_of_an_eighth_of_what_is_in_flight():
    for i in range(200):
        tasks.add.enqueue(i, i)
    dispatcher = HeldDispatcher()
    busy = worker(dispatcher, concurrency=80)
    assert busy.tick().claimed == 80

    dispatcher.end(5)
    first = busy.tick()
    dispatcher.end(5)
    second = busy.tick()

    assert (first.recorded, first.claimed) == (5, 0)  # 5 free < 75 // 8
    assert (second.recorded, second.claimed) == (5, 10)  # 10 free >= 70 // 8
    assert dispatcher.asked_at_least[-1] == 75 // 8  # asked before the 5 were recorded
    assert TaskExecution.objects.filter(state="SUCCESSFUL").count() == 10
    assert TaskExecution.objects.filter(state="RUNNING").count() == 80


def test_a_worker_with_few_in_flight_claims_as_each_attempt_ends():
    for i in range(5):
        tasks.add.enqueue(i, i)
    dispatcher = HeldDispatcher()
    quiet = worker(dispatcher, concurrency=4)
    assert quiet.tick().claimed == 4

    dispatcher.end(1)
    tick = quiet.tick()

    assert (tick.recorded, tick.claimed) == (1, 1)
    assert dispatcher.asked_at_least[-1] == 1
