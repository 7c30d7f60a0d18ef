"""Execution rows of Celery runs: queued by the event loop, written by a thread of their own."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from kombu.serialization import dumps

from celery_bridge.records import DjangoRecords
from celery_bridge.runs import Completion, Job, Kind, exception_info
from django_ray.lifecycle.celery import row_id
from django_ray.models import TaskExecution

pytestmark = pytest.mark.django_db(transaction=True)


def job(number: int, task_id: str, *, retries: int = 0, handle: str = "h1") -> Job:
    content_type, encoding, body = dumps([[number], {"k": "v"}, {}], serializer="json")
    request = {"id": task_id, "retries": retries, "delivery_info": {"routing_key": "q1"}}
    run = Job(number=number, trace_args=("tests.celery.tasks.add", task_id, request, body,
                                         content_type, encoding))  # fmt: skip
    run.handle = handle
    return run


def test_rows_are_written_in_order_off_the_callers_thread_and_flushed_on_close():
    ok, bad, again = (str(uuid.uuid4()) for _ in range(3))
    records = DjangoRecords("worker@host")
    with CaptureQueriesContext(connection) as on_this_thread:
        records.started(ok_run := job(1, ok))
        records.started(bad_run := job(2, bad))
        records.started(job(3, again))
        records.started(job(3, again, retries=1, handle="h2"))  # a Celery retry, same id
        records.record(Completion(ok_run, Kind.RESULT, (0, 2, 0.01)))
        records.record(Completion(bad_run, Kind.ERROR, exception_info(ValueError("no"))))
        records.close()

    assert on_this_thread.captured_queries == []
    rows = {str(row.celery_task_id): row for row in TaskExecution.objects.filter(origin="celery")}
    assert (rows[ok].state, rows[ok].args, rows[ok].kwargs, rows[ok].queue_name) == (
        "SUCCESSFUL",
        [1],
        {"k": "v"},
        "q1",
    )
    assert rows[ok].pk == row_id(ok)
    assert rows[bad].state == "FAILED"
    assert rows[bad].errors[0]["exception_class_path"] == "builtins.ValueError"
    assert (rows[again].state, rows[again].attempt, rows[again].ray_handle) == ("RUNNING", 2, "h2")
    assert rows[ok].started_at <= rows[ok].finished_at


def test_a_row_that_cannot_be_written_is_skipped_and_the_writer_goes_on(caplog):
    fine = str(uuid.uuid4())
    records = DjangoRecords("worker@host")
    broken = job(1, str(uuid.uuid4()))
    broken.trace_args = (*broken.trace_args[:3], b"not json", *broken.trace_args[4:])

    records.started(broken)
    records.started(job(2, fine))
    records.close()

    assert "could not record" in caplog.text
    assert TaskExecution.objects.get(celery_task_id=fine).state == "RUNNING"
