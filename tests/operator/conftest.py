"""Rows, leases and users for the operator tests (admin, status, doctor)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from django_ray.models import TaskExecution, WorkerLease

ADD = "tests.testapp.tasks.add"


def execution(**fields: Any) -> TaskExecution:
    """A saved TaskExecution of ``tests.testapp.tasks.add`` with ``fields`` set."""
    return TaskExecution.objects.create(**{"task_path": ADD, "args": [1, 2], **fields})


def lease(worker_id: str, *, expires_in: float, now: datetime | None = None, **fields: Any):
    """A saved WorkerLease whose lease ends ``expires_in`` seconds from ``now`` (past if < 0)."""
    now = now or timezone.now()
    values = {
        "hostname": "host-1",
        "pid": 100,
        "queues": ["default"],
        "runner": "ray_core",
        "concurrency": 4,
        "heartbeat_at": now - timedelta(seconds=5),
        "lease_expires_at": now + timedelta(seconds=expires_in),
        **fields,
    }
    return WorkerLease.objects.create(worker_id=worker_id, **values)


def grant(user: User, *codenames: str) -> None:
    """Give ``user`` django_ray permissions by codename, creating custom ones Meta lacks."""
    content_types = ContentType.objects.get_for_models(TaskExecution, WorkerLease)
    for codename in codenames:
        model = WorkerLease if codename.endswith("workerlease") else TaskExecution
        permission, _ = Permission.objects.get_or_create(
            codename=codename,
            content_type=content_types[model],
            defaults={"name": codename.replace("_", " ")},
        )
        user.user_permissions.add(permission)


@pytest.fixture
def staff(django_user_model) -> User:
    """A staff user who may look at tasks and workers, and nothing more."""
    user = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    grant(user, "view_taskexecution", "view_workerlease")
    return user


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client
