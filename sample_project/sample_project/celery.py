"""The sample's Celery app, beside its Django tasks.

The same app runs on Celery's own pool or, through django-ray's Celery pool
(part of this distribution), on Ray; only the ``-P`` option differs, and
nothing in this file changes (run from ``sample_project/``, Redis needed)::

    ../.venv/bin/celery -A sample_project worker -P prefork -l INFO
    ../.venv/bin/celery -A sample_project worker -P django_ray -c 8 -l INFO

Beat schedules ``execution_counts`` every minute (``CELERY_BEAT_SCHEDULE`` in
the settings): ``../.venv/bin/celery -A sample_project beat -l INFO``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")

app = Celery("sample_project")
# Every CELERY_* Django setting configures the app (CELERY_BROKER_URL -> broker_url).
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=3, default_retry_delay=1)
def word_lengths(self, text: str) -> dict[str, int]:
    """Lengths of the words of ``text``; retried by Celery (not django-ray) if it is empty."""
    words = text.split()
    if not words:
        raise self.retry(exc=ValueError("no words yet"))
    return {word: len(word) for word in words}


@app.task
def execution_counts() -> dict[str, int]:
    """The Django ORM from a Celery task: django-ray's executions per state."""
    from django.db.models import Count

    from django_ray.models import TaskExecution

    return dict(TaskExecution.objects.order_by().values_list("state").annotate(n=Count("pk")))
