"""How often the ray_job dispatcher asks Ray after each job: soon after it starts, then
less often the longer it runs, never less than every few seconds."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import ray.job_submission

from django_ray.runtime import jobs
from django_ray.runtime.job import Job
from django_ray.runtime.jobs import RayJobDispatcher, submission_id


class FakeJobsApi:
    """Answers get_job_info from a table the test sets; records who was asked when."""

    def __init__(self, address: str) -> None:
        self.status: dict[str, str] = {}
        self.asked: list[tuple[float, str]] = []
        self.stopped: list[str] = []

    def get_job_info(self, sid: str) -> SimpleNamespace:
        self.asked.append((clock.now, sid))
        return SimpleNamespace(status=self.status[sid], message="", driver_node_id="node-1")

    def submit_job(self, *, submission_id: str, **options: object) -> str:
        self.status[submission_id] = "PENDING"
        return submission_id

    def stop_job(self, sid: str) -> bool:
        self.stopped.append(sid)
        return True

    def list_jobs(self) -> None:
        raise AssertionError("the whole history was listed")


class Clock:
    now = 1000.0

    def monotonic(self) -> float:
        return self.now


clock = Clock()


@pytest.fixture
def dispatcher(monkeypatch, settings):
    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", FakeJobsApi)
    monkeypatch.setattr(jobs.time, "monotonic", clock.monotonic)
    clock.now = 1000.0
    return RayJobDispatcher("http://127.0.0.1:8265", poll_seconds=0.5)


def submit(dispatcher: RayJobDispatcher, name: str) -> str:
    job = Job(execution_id=name, attempt=1, task_path="app.tasks.t", args=[], kwargs={})
    sid = dispatcher.submit(job)
    dispatcher._client.status[sid] = "RUNNING"
    return sid


def run_for(dispatcher: RayJobDispatcher, seconds: float) -> list:
    outcomes = []
    end = clock.now + seconds
    while clock.now < end:
        outcomes += dispatcher.poll()
        clock.now += 0.5
    return outcomes


def test_a_long_job_is_asked_after_less_and_less_often_but_at_least_every_5_s(dispatcher):
    sid = submit(dispatcher, "long")

    run_for(dispatcher, 120)

    times = [at for at, asked in dispatcher._client.asked if asked == sid]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert times[0] == 1000.0  # at the first poll
    assert gaps[:3] == [0.5, 0.5, 0.5]  # often while it is young
    assert max(gaps) <= RayJobDispatcher.CHECK_AT_MOST_EVERY
    assert gaps == sorted(gaps)
    assert len(times) < 45  # a poll every half second would be 240 requests


def test_an_ended_job_is_found_within_the_longest_gap(dispatcher):
    sid = submit(dispatcher, "ends")
    run_for(dispatcher, 60)
    dispatcher._client.status[sid] = "SUCCEEDED"
    ended_at = clock.now

    while not (outcomes := dispatcher.poll()):
        clock.now += 0.5

    assert [(o.execution_id, o.recorded, o.node) for o in outcomes] == [("ends", True, "node-1")]
    assert clock.now - ended_at <= RayJobDispatcher.CHECK_AT_MOST_EVERY
    assert dispatcher.in_flight == 0


def test_a_cancelled_job_is_asked_after_at_the_next_poll(dispatcher):
    sid = submit(dispatcher, "cancelled")
    run_for(dispatcher, 60)
    before = len(dispatcher._client.asked)

    dispatcher.cancel("cancelled")
    dispatcher._client.status[sid] = "STOPPED"
    outcomes = dispatcher.poll()

    assert dispatcher._client.stopped == [submission_id("cancelled", 1)]
    assert len(dispatcher._client.asked) == before + 1
    assert [o.execution_id for o in outcomes] == ["cancelled"]
