"""The vocabulary of the state tables: states, origins and runners (no ORM models here).

States are Django's ``TaskResultStatus``; finer facts (cancelled, lost, retrying)
live in their own columns.
"""

from __future__ import annotations

from django.db import models
from django.tasks import TaskResultStatus

State = TaskResultStatus


class Origin(models.TextChoices):
    TASKS = "tasks", "Django Tasks"
    CELERY = "celery", "Celery"


class Runner(models.TextChoices):
    RAY_CORE = "ray_core", "Ray Core"
    RAY_JOB = "ray_job", "Ray Job"


# Runners whose attempts go on without the worker that submitted them: at
# shutdown they are left running, and an orphan is adopted, not lost.
OUTLIVE_THEIR_WORKER = frozenset({Runner.RAY_JOB})
