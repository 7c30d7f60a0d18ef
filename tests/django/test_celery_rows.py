"""Celery rows stay Celery's: Django workers serving the same queue never move them."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.serialization import dumps

from celery_bridge.records import DjangoRecords
from celery_bridge.runs import Job
from django_ray.lifecycle import operator
from django_ray.models import TaskExecution, WorkerLease
from django_ray.operations.status import collect_status
from django_ray.operations.status_text import render_status
from django_ray.states import Origin
from django_ray.testing import drain
from django_ray.worker.leases import Lease
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def celery_row(**fields):
    values = {
        "origin": Origin.CELERY,
        "celery_task_id": str(uuid.uuid4()),
        "task_path": "proj.tasks.sleepy",
        "queue_name": "default",  # the Django worker's queue too
        "attempt": 1,
        "worker": "celery@host",
        "runner": "ray_core",
        "started_at": timezone.now() - timedelta(hours=1),
        "last_attempted_at": timezone.now() - timedelta(hours=1),
    }
    return TaskExecution.objects.create(**{**values, **fields})


def test_a_django_worker_on_the_same_queue_neither_claims_nor_recovers_celery_rows():
    pending_retry = celery_row(state="READY")
    running_elsewhere = celery_row(state="RUNNING")  # its Celery host holds no lease here
    mine = tasks.add.enqueue(1, 2)

    worker = drain(["default"])

    assert worker.summary.claimed == 1
    assert TaskExecution.objects.get(pk=mine.id).state == "SUCCESSFUL"
    for row in (pending_retry, running_elsewhere):
        fresh = TaskExecution.objects.get(pk=row.pk)
        assert (fresh.state, fresh.attempt, fresh.errors, fresh.worker) == (
            row.state,
            1,
            [],
            "celery@host",
        )


def test_cancel_and_retry_skip_celery_rows():
    ready, running = celery_row(state="READY"), celery_row(state="RUNNING")
    failed = celery_row(state="FAILED")
    rows = TaskExecution.objects.filter(pk__in=[ready.pk, running.pk, failed.pk])

    assert str(operator.cancel(rows, message="by hand")) == (
        "Cancelled 0 READY tasks; 3 skipped because they came from Celery "
        "(revoke them through Celery)."
    )
    assert operator.retry_failed(rows).from_celery == 3
    assert sorted(rows.values_list("state", flat=True)) == ["FAILED", "READY", "RUNNING"]
    assert not rows.filter(cancelled_at__isnull=False).exists()


def celery_job(task_id: str) -> Job:
    content_type, encoding, body = dumps([[1], {}, {}], serializer="json")
    request = {"id": task_id, "retries": 0, "delivery_info": {"routing_key": "default"}}
    return Job(
        number=1, trace_args=("proj.tasks.sleepy", task_id, request, body, content_type, encoding)
    )


def test_a_celery_worker_holds_a_lease_so_its_tasks_are_in_flight_not_stuck(settings):
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, "STUCK_TASK_TIMEOUT_SECONDS": 1}
    lease = Lease(
        "celery@host",
        queues=["default"],
        concurrency=8,
        runner="ray_core",
        heartbeat_seconds=1,
        lease_seconds=30,
        origin=Origin.CELERY,
    )
    records = DjangoRecords("celery@host", lease=lease)
    records.started(celery_job(str(uuid.uuid4())))
    try:
        wait = timezone.now() + timedelta(seconds=10)
        while not TaskExecution.objects.of_celery().running().exists():
            assert timezone.now() < wait
        status = collect_status(timezone.now() + timedelta(seconds=5))

        assert status.stuck_count == 0
        (worker,) = status.workers
        assert (worker.worker_id, worker.origin, worker.lease, worker.in_flight) == (
            "celery@host",
            "celery",
            "alive",
            1,
        )
        assert [(q.queue, q.counts) for q in status.celery_queues] == [
            ("default", {"READY": 0, "RUNNING": 1})
        ]
        assert status.queues == ()  # Django Tasks queues hold nothing
        assert "celery pool" in render_status(status)
    finally:
        records.close()
    assert WorkerLease.objects.get(pk="celery@host").stopping


def test_without_the_lease_the_same_celery_task_is_reported_stuck(settings):
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, "STUCK_TASK_TIMEOUT_SECONDS": 1}
    celery_row(state="RUNNING")

    assert collect_status().stuck_count == 1
