"""RayTaskBackend against the real database: enqueue, get_result, validation."""

from __future__ import annotations

import datetime
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils import timezone

from django_ray.backends import RayTaskBackend
from django_ray.models import TaskExecution
from django_ray.payloads import PayloadError
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def test_capabilities_are_declared():
    backend = task_backends["default"]

    assert isinstance(backend, RayTaskBackend)
    assert (
        backend.supports_defer,
        backend.supports_async_task,
        backend.supports_get_result,
        backend.supports_priority,
    ) == (True, True, True, True)


def test_enqueue_writes_one_ready_row():
    result = tasks.add.enqueue(2, b=3)

    row = TaskExecution.objects.get()
    assert str(row.pk) == result.id
    assert (row.task_path, row.args, row.kwargs, row.queue_name, row.priority, row.state) == (
        "tests.testapp.tasks.add",
        [2],
        {"b": 3},
        "default",
        0,
        "READY",
    )
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at == row.enqueued_at
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")


def test_an_enqueued_row_holds_what_the_orm_would_have_written():
    tasks.add.using(priority=3, num_cpus=0.5).enqueue(2, b=3)

    row = TaskExecution.objects.get()
    expected = TaskExecution(
        id=row.id,
        task_path="tests.testapp.tasks.add",
        args=[2],
        kwargs={"b": 3},
        priority=3,
        options={"num_cpus": 0.5},
        signature=row.signature,
        enqueued_at=row.enqueued_at,
    )
    columns = [field.attname for field in TaskExecution._meta.concrete_fields]
    assert {c: getattr(row, c) for c in columns} == {c: getattr(expected, c) for c in columns}


def test_queue_priority_and_run_after_are_stored():
    later = timezone.now() + datetime.timedelta(hours=1)

    tasks.multiply.using(priority=-5, run_after=later).enqueue(1, 2)

    row = TaskExecution.objects.get()
    assert (row.queue_name, row.priority, row.run_after) == ("other", -5, later)


@pytest.mark.django_db(transaction=True)
def test_enqueue_in_a_rolled_back_transaction_leaves_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.enqueue(1, 1)
        raise RuntimeError("roll back")

    assert TaskExecution.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_enqueue_in_a_committed_transaction_leaves_exactly_one():
    with transaction.atomic():
        result = tasks.add.enqueue(1, 1)

    assert list(TaskExecution.objects.values_list("pk", flat=True)) == [uuid.UUID(result.id)]


def test_unserializable_argument_is_rejected_and_nothing_is_written():
    with pytest.raises(PayloadError) as caught:
        tasks.echo.enqueue({"at": datetime.date(2026, 1, 1)})

    assert str(caught.value) == (
        "Task tests.testapp.tasks.echo: args[0]['at'] is of type datetime.date, which is not "
        "JSON-serializable; use dict with str keys, list, tuple, str, int, float, bool or None."
    )
    assert TaskExecution.objects.count() == 0


def test_unserializable_keyword_argument_names_the_keyword():
    with pytest.raises(PayloadError, match=r"kwargs\['value'\] is of type bytes"):
        tasks.echo.enqueue(value=b"raw")


def test_unknown_queue_is_invalid():
    with pytest.raises(InvalidTask, match=r"Queue 'nope' is not valid for backend\."):
        tasks.add.using(queue_name="nope").enqueue(1, 2)


def test_naive_run_after_is_invalid():
    with pytest.raises(InvalidTask, match=r"run_after must be an aware datetime\."):
        tasks.add.using(run_after=datetime.datetime(2030, 1, 1)).enqueue(1, 2)


def test_get_result_reads_the_row():
    result = tasks.add.enqueue(2, 2)

    fetched = default_task_backend.get_result(result.id)

    assert (fetched.id, fetched.status, fetched.task.func) == (
        result.id,
        TaskResultStatus.READY,
        tasks.add.func,
    )
    assert tasks.add.get_result(result.id).id == result.id


def test_get_result_shows_a_recorded_value_and_errors():
    ok = tasks.add.enqueue(2, 2)
    bad = tasks.fail.enqueue("boom")
    TaskExecution.objects.filter(pk=ok.id).update(state="SUCCESSFUL", result_data=4)
    TaskExecution.objects.filter(pk=bad.id).update(
        state="FAILED",
        errors=[{"exception_class_path": "builtins.ValueError", "traceback": "tb", "attempt": 1}],
    )

    assert default_task_backend.get_result(ok.id).return_value == 4
    failed = default_task_backend.get_result(bad.id)
    assert [e.exception_class_path for e in failed.errors] == ["builtins.ValueError"]
    assert failed.errors[0].traceback == "tb"
    with pytest.raises(ValueError, match="Task failed"):
        _ = failed.return_value


@pytest.mark.parametrize("unknown", [str(uuid.uuid4()), "not-a-uuid", ""])
def test_get_result_of_an_unknown_id_raises(unknown):
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(unknown)


@pytest.mark.django_db(transaction=True)
def test_async_enqueue_and_get_result():
    result = async_to_sync(tasks.async_add.aenqueue)(1, 2)

    fetched = async_to_sync(tasks.async_add.aget_result)(result.id)

    assert (fetched.id, fetched.status) == (result.id, TaskResultStatus.READY)
