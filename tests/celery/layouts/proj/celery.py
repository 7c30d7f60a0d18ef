"""``app = Celery("proj")`` configured from Django settings, as Celery's Django guide has it."""

from __future__ import annotations

from celery import Celery

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tests.celery.layouts.proj"])
