"""The packed form a job and its outcome take to and from Ray Core: plain values only."""

from __future__ import annotations

import datetime

from django_ray.runtime.job import Job, Outcome

PLAIN = (str, int, float, bool, type(None), list, dict, tuple)


def plain(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(plain(item) for item in value)
    return isinstance(value, PLAIN)


def test_a_job_round_trips_through_plain_values():
    moment = datetime.datetime(2026, 11, 28, 16, 2, 38, 123456, tzinfo=datetime.UTC)
    job = Job(
        execution_id="e1",
        attempt=3,
        task_path="app.tasks.add",
        args=[1, {"a": [2]}],
        kwargs={"b": None},
        backend="other",
        takes_context=True,
        enqueued_at=moment,
        started_at=None,
        worker_ids=["w1", "w2"],
        options={"num_cpus": 0.5, "resources": {"gpu_slot": 1}},
        claim_token="tok",
    )

    packed = job.pack()

    assert plain(packed)
    assert Job.unpack(list(packed)) == job  # Ray may hand a tuple back as a list


def test_an_outcome_travels_without_its_ids_and_gets_them_from_the_job():
    job = Job(execution_id="e1", attempt=2, task_path="app.tasks.add", args=[], kwargs={})
    error = {"exception_class_path": "builtins.ValueError", "message": "no"}
    outcome = Outcome(execution_id="e1", attempt=2, value=None, error=error)

    packed = outcome.pack()

    assert plain(packed) and "e1" not in packed
    assert Outcome.unpack(job, packed) == outcome
