"""Django's task_started and task_finished, as the worker sends them: a TaskResult per row
for a receiver that wants one, and none built when nobody would look at it."""

from __future__ import annotations

import logging
from unittest import mock

import pytest
from django.tasks import TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.test import override_settings

from django_ray.exceptions import InvalidSignature
from django_ray.models import TaskExecution
from django_ray.signing import verify
from django_ray.testing import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def test_a_receiver_hears_each_task_start_and_end_with_its_result():
    heard = []

    def receiver(sender, task_result, **kwargs):
        heard.append((kwargs["signal"], task_result.id, task_result.status))

    ok, broken = tasks.add.enqueue(1, 2), tasks.fail.enqueue("no")
    task_started.connect(receiver)
    task_finished.connect(receiver)
    try:
        drain()
    finally:
        task_started.disconnect(receiver)
        task_finished.disconnect(receiver)

    assert sorted(heard, key=lambda h: (h[1], h[0] is task_finished)) == sorted(
        [
            (task_started, ok.id, TaskResultStatus.RUNNING),
            (task_finished, ok.id, TaskResultStatus.SUCCESSFUL),
            (task_started, broken.id, TaskResultStatus.RUNNING),
            (task_finished, broken.id, TaskResultStatus.FAILED),
        ],
        key=lambda h: (h[1], h[0] is task_finished),
    )


def test_no_result_is_built_when_only_djangos_quiet_logging_receivers_listen(caplog):
    tasks.add.enqueue(1, 2)
    built = mock.Mock(wraps=TaskExecution.to_task_result)
    caplog.set_level(logging.WARNING, logger="django.tasks")

    with mock.patch.object(TaskExecution, "to_task_result", built):
        drain()

    assert built.call_count == 0
    assert TaskExecution.objects.get().state == "SUCCESSFUL"


def test_djangos_log_lines_come_when_its_logger_would_log(caplog):
    result = tasks.add.enqueue(1, 2)
    caplog.set_level(logging.INFO, logger="django.tasks")

    drain()

    lines = [r.getMessage() for r in caplog.records if r.name == "django.tasks"]
    assert f"Task id={result.id} path={tasks.add.module_path} state=RUNNING" in lines
    assert f"Task id={result.id} path={tasks.add.module_path} state=SUCCESSFUL" in lines


def test_a_row_verified_once_is_checked_again_when_its_signature_or_the_key_changes():
    tasks.add.enqueue(1, 2)
    row = TaskExecution.objects.get()
    verify(row)
    verify(row)  # remembered: no second check

    with override_settings(SECRET_KEY="another key entirely"), pytest.raises(InvalidSignature):
        verify(row)
    row.signature = "forged"
    with pytest.raises(InvalidSignature, match="does not match its signature"):
        verify(row)
