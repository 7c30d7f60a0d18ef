"""enqueue_many(): many rows of one task in one statement, checked first, written whole or not."""

from __future__ import annotations

import datetime
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued

from django_ray.lifecycle import attempts
from django_ray.models import TaskExecution
from django_ray.payloads import PayloadError
from django_ray.signing import sign, verify
from django_ray.testing import drain
from tests.django.notifications import listening
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

BAD_DATE = datetime.date(2026, 1, 1)


def test_one_row_per_call_in_the_order_of_the_calls():
    results = tasks.add.enqueue_many([((1, 2), {}), ([3], {"b": 4}), ((), {"a": 5, "b": 6})])

    rows = {str(row.pk): row for row in TaskExecution.objects.all()}
    assert [(rows[r.id].args, rows[r.id].kwargs) for r in results] == [
        ([1, 2], {}),
        ([3], {"b": 4}),
        ([], {"a": 5, "b": 6}),
    ]
    assert [(r.status, r.args, r.kwargs) for r in results] == [
        (TaskResultStatus.READY, [1, 2], {}),
        (TaskResultStatus.READY, [3], {"b": 4}),
        (TaskResultStatus.READY, [], {"a": 5, "b": 6}),
    ]
    assert [r.enqueued_at for r in results] == [rows[r.id].enqueued_at for r in results]
    claimed = attempts.claim(10, worker_id="w", queues=["default"], runner="ray_core")
    assert [str(row.pk) for row in claimed] == [r.id for r in results]  # claimed in call order


def test_the_ids_are_random_version_4_uuids_ascending_in_call_order():
    ids = [uuid.UUID(r.id) for r in tasks.add.enqueue_many([((i, i), {}) for i in range(300)])]

    assert ids == sorted(ids)
    assert len(set(ids)) == 300
    assert {(id_.version, id_.variant) for id_ in ids} == {(4, uuid.RFC_4122)}


def test_the_rows_carry_the_task_as_enqueue_would_store_it():
    (many,) = tasks.add.using(priority=7, num_cpus=0.5).enqueue_many([((1, 2), {})])
    one = tasks.add.using(priority=7, num_cpus=0.5).enqueue(1, 2)

    columns = ("task_path", "queue_name", "priority", "options", "state", "origin", "backend")
    stored = TaskExecution.objects.values_list(*columns)
    assert stored.get(pk=many.id) == stored.get(pk=one.id)
    assert stored.get(pk=many.id)[2:4] == (7, {"num_cpus": 0.5})


def test_every_row_is_signed_as_enqueue_signs_it():
    results = tasks.echo.enqueue_many([([value], {}) for value in (1.0, 1e16, "x", {"k": [None]})])

    for result in results:
        row = TaskExecution.objects.get(pk=result.id)
        verify(row)  # raises unless the values read back match what was signed
        assert row.signature == sign(row)


def test_the_rows_run_to_an_end_through_the_worker():
    results = tasks.add.enqueue_many([((i, i), {}) for i in range(20)])

    drain()

    assert [default_task_backend.get_result(r.id).return_value for r in results] == [
        2 * i for i in range(20)
    ]


@pytest.mark.ray
def test_the_rows_run_on_ray(ray_cluster, ray_connection):
    results = tasks.multiply.enqueue_many([((i, 3), {}) for i in range(30)])

    call_command("django_ray_worker", "--ray-core", "--burst", "--address", ray_cluster.address)

    fetched = [default_task_backend.get_result(r.id) for r in results]
    assert [(r.status, r.return_value) for r in fetched] == [
        (TaskResultStatus.SUCCESSFUL, i * 3) for i in range(30)
    ]


def test_a_bad_argument_fails_the_whole_batch_with_enqueues_error():
    with pytest.raises(PayloadError) as from_enqueue:
        tasks.echo.enqueue({"at": BAD_DATE})
    sent = []
    task_enqueued.connect(receiver := lambda **kwargs: sent.append(kwargs))
    try:
        with pytest.raises(PayloadError) as from_many:
            tasks.echo.enqueue_many([((1,), {}), (({"at": BAD_DATE},), {}), ((2,), {})])
    finally:
        task_enqueued.disconnect(receiver)

    assert (
        str(from_many.value)
        == str(from_enqueue.value)
        == (
            "Task tests.testapp.tasks.echo: args[0]['at'] is of type datetime.date, which is not "
            "JSON-serializable; use dict with str keys, list, tuple, str, int, float, bool or None."
        )
    )
    assert from_many.value.__notes__ == ["In call 1 of enqueue_many()."]
    assert (TaskExecution.objects.count(), sent) == (0, [])


def test_a_bad_keyword_argument_is_named_as_enqueue_names_it():
    with pytest.raises(PayloadError, match=r"kwargs\['value'\] is of type bytes"):
        tasks.echo.enqueue_many([((), {"value": 1}), ((), {"value": b"raw"})])

    assert TaskExecution.objects.count() == 0


@pytest.mark.parametrize("call", [(1, 2), ((1,), {}, {}), "ab", ((1,), [("b", 2)])])
def test_a_call_that_is_not_an_args_kwargs_pair_is_refused(call):
    with pytest.raises(TypeError) as caught:
        tasks.add.enqueue_many([((1, 2), {}), call])

    assert str(caught.value) == (
        "Task tests.testapp.tasks.add: each call is an (args, kwargs) pair, args a list or "
        f"tuple and kwargs a dict; call 1 is {call!r}."
    )
    assert TaskExecution.objects.count() == 0


def test_an_invalid_task_is_refused_as_enqueue_refuses_it():
    with pytest.raises(InvalidTask, match=r"^Queue 'nope' is not valid for backend\.$"):
        tasks.add.using(queue_name="nope").enqueue_many([((1, 2), {})])


def test_task_enqueued_is_sent_for_each_result_in_order():
    sent = []

    def receiver(sender, task_result, **kwargs):
        sent.append(task_result)

    task_enqueued.connect(receiver)
    try:
        results = tasks.add.enqueue_many(((i, 1), {}) for i in range(5))  # any iterable
    finally:
        task_enqueued.disconnect(receiver)

    assert sent == results
    assert len({r.id for r in results}) == 5


def test_no_calls_write_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert tasks.add.enqueue_many([]) == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_batch_leaves_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.enqueue_many([((i, i), {}) for i in range(10)])
        raise RuntimeError("roll back")

    assert TaskExecution.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_async_enqueue_many():
    results = async_to_sync(tasks.add.aenqueue_many)([((1, 2), {}), ((3, 4), {})])

    assert sorted(TaskExecution.objects.values_list("pk", flat=True)) == sorted(
        uuid.UUID(r.id) for r in results
    )


def test_on_a_backend_without_enqueue_many_each_call_is_enqueued(settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}

    results = tasks.add.enqueue_many([((1, 2), {}), ((3, 4), {})])

    assert [(r.args, r.kwargs) for r in results] == [([1, 2], {}), ([3, 4], {})]
    assert default_task_backend.results == results
    assert TaskExecution.objects.count() == 0


@pytest.mark.postgres
def test_a_batch_is_one_insert_statement_on_postgresql(django_assert_num_queries):
    with django_assert_num_queries(1) as captured:
        tasks.add.enqueue_many([((i, i), {}) for i in range(1000)])

    assert captured.captured_queries[0]["sql"].startswith('INSERT INTO "django_ray_taskexecution"')
    assert TaskExecution.objects.count() == 1000


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_batch_wakes_each_of_its_queues_once_at_commit():
    with listening() as listener:
        with transaction.atomic():
            tasks.add.enqueue_many([((i, i), {}) for i in range(500)])
            tasks.multiply.enqueue_many([((i, i), {}) for i in range(500)])  # queue "other"
            assert listener.heard() == []

        assert listener.heard() == ["default", "other"]
