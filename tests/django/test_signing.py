"""Only what enqueue() wrote runs: rows are signed, and checked before anything is imported."""

from __future__ import annotations

import sys

import pytest
from django.tasks import default_task_backend

from django_ray.exceptions import InvalidSignature
from django_ray.lifecycle import attempts
from django_ray.models import TaskExecution
from django_ray.runtime import job_entrypoint
from django_ray.signing import sign, sign_all, verify
from django_ray.testing import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

NEVER_IMPORTED = "tests.testapp.never_imported"


def failure(row_id: str) -> tuple[str, str, str]:
    row = TaskExecution.objects.get(pk=row_id)
    error = row.errors[-1]
    return row.state, error["exception_class_path"], error["message"]


def test_enqueue_signs_the_row_and_the_signature_survives_the_database():
    result = tasks.add.using(num_cpus=0.5).enqueue(2.0, 1e16)

    row = TaskExecution.objects.get(pk=result.id)
    verify(row)  # raises if the values read back differ from the ones signed
    assert row.signature == sign(row)


def test_a_row_written_outside_enqueue_fails_and_nothing_it_names_is_imported():
    sys.modules.pop(NEVER_IMPORTED, None)
    row = TaskExecution.objects.create(task_path=f"{NEVER_IMPORTED}.boom", args=[1])

    drain()

    state, kind, message = failure(str(row.pk))
    assert (state, kind) == ("FAILED", "django_ray.exceptions.InvalidSignature")
    assert message == (
        f"Execution {row.pk} ({NEVER_IMPORTED + '.boom'!r}) carries no signature: it was not "
        "written by enqueue(); nothing it names was imported or run."
    )
    assert NEVER_IMPORTED not in sys.modules
    assert TaskExecution.objects.get(pk=row.pk).attempt == 1  # never retried


@pytest.mark.parametrize(
    "change",
    [
        {"args": [100, 1]},
        {"kwargs": {"extra": True}},
        {"task_path": "tests.testapp.tasks.multiply"},
        {"options": {"runtime_env": {"env_vars": {"PYTHONPATH": "/elsewhere"}}}},
        {"takes_context": True},
    ],
)
def test_a_row_changed_after_enqueue_fails_unrun(change):
    result = tasks.add.enqueue(1, 1)
    TaskExecution.objects.filter(pk=result.id).update(**change)

    drain()

    state, kind, message = failure(result.id)
    assert (state, kind) == ("FAILED", "django_ray.exceptions.InvalidSignature")
    assert "does not match its signature" in message
    assert TaskExecution.objects.get(pk=result.id).result_data is None


def test_a_signature_copied_to_another_row_does_not_match():
    original = TaskExecution.objects.get(pk=tasks.add.enqueue(1, 1).id)
    copy = TaskExecution.objects.create(
        task_path=original.task_path, args=original.args, signature=original.signature
    )

    with pytest.raises(InvalidSignature):
        verify(copy)


def test_rows_signed_with_a_key_in_secret_key_fallbacks_still_run(settings):
    result = tasks.add.enqueue(2, 3)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-key-after-rotation-" + "x" * 40

    drain()

    assert default_task_backend.get_result(result.id).return_value == 5


def test_rows_signed_with_a_key_that_is_gone_fail(settings):
    result = tasks.add.enqueue(2, 3)
    settings.SECRET_KEY = "a-new-key-after-rotation-" + "x" * 40

    drain()

    assert failure(result.id)[:2] == ("FAILED", "django_ray.exceptions.InvalidSignature")


def test_get_result_of_a_tampered_row_raises_instead_of_importing():
    result = tasks.add.enqueue(1, 1)
    TaskExecution.objects.filter(pk=result.id).update(task_path=f"{NEVER_IMPORTED}.boom")
    sys.modules.pop(NEVER_IMPORTED, None)

    with pytest.raises(InvalidSignature):
        default_task_backend.get_result(result.id)
    assert NEVER_IMPORTED not in sys.modules


def test_a_ray_jobs_entrypoint_checks_the_row_before_it_runs_it(capsys):
    result = tasks.add.enqueue(1, 1)
    (row,) = attempts.claim(1, worker_id="w", queues=["default"], runner="ray_job")
    TaskExecution.objects.filter(pk=row.pk).update(args=[40, 2])  # after the worker's check

    assert job_entrypoint.main([str(row.pk), str(row.attempt), str(row.claim_token)]) == 0

    assert failure(result.id)[:2] == ("FAILED", "django_ray.exceptions.InvalidSignature")


@pytest.mark.parametrize("key", ["tests-only-not-a-secret", "another-key-" + "y" * 40])
def test_a_batch_is_signed_as_each_row_alone_would_be(settings, key):
    settings.SECRET_KEY = key
    rows = [
        TaskExecution(task_path="tests.testapp.tasks.echo", args=args, kwargs=kwargs, options=opts)
        for args, kwargs, opts in [
            ([1, 2.0, 1e16], {}, {}),
            ([{"b": 1, "a": [True, None]}], {"x": "é"}, {"num_cpus": 2.0}),
            ([], {"z": {"y": 0.5}}, {"num_cpus": 2.0}),
        ]
    ]
    for row in rows:
        row.options = rows[0].options  # a batch is of one task: the same options

    sign_all(rows)

    assert [row.signature for row in rows] == [sign(row) for row in rows]
    assert len({row.signature for row in rows}) == 3
