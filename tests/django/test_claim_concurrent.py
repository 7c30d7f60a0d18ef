"""Claims racing on PostgreSQL: each row goes to exactly one claimer, locked rows are skipped."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from django_ray.lifecycle import attempts
from django_ray.models import TaskExecution
from tests.testapp import tasks

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def claim(limit, worker):
    return attempts.claim(limit, worker_id=worker, queues=["default"], runner="ray_core")


def test_racing_claimers_each_get_their_own_rows():
    TaskExecution.objects.bulk_create(
        TaskExecution(task_path="tests.testapp.tasks.add", args=[i, i]) for i in range(300)
    )
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def claimer(name: str) -> None:
        mine = claimed.setdefault(name, [])
        try:
            start.wait()
            while rows := claim(7, name):
                mine += [str(row.pk) for row in rows]
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    every = [pk for rows in claimed.values() for pk in rows]
    assert len(every) == len(set(every)) == 300
    assert sum(1 for rows in claimed.values() if rows) > 1  # they did race
    owners = dict(TaskExecution.objects.values_list("pk", "worker"))
    assert all(str(owners[uuid.UUID(pk)]) == name for name, rows in claimed.items() for pk in rows)


def test_a_row_locked_by_another_transaction_is_skipped_not_waited_for():
    locked = tasks.add.enqueue(1, 1)
    free = tasks.add.enqueue(2, 2)
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                TaskExecution.objects.select_for_update().get(pk=locked.id)
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    try:
        assert holding.wait(30)
        claimed = claim(10, "w1")
    finally:
        release.set()
        thread.join(30)

    assert [str(row.pk) for row in claimed] == [free.id]
    assert [str(row.pk) for row in claim(10, "w2")] == [locked.id]
