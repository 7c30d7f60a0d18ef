"""Benchmark settings with django-tasks-db beside django-ray, on the same database (B7).

django-ray stays the ``default`` backend; django-tasks-db is the ``peer`` alias,
served by its own ``db_worker --backend peer``. Connections are persistent, as a
production ``db_worker`` would be run: with Django's default ``CONN_MAX_AGE`` of
0 it opens a new connection for every task (django-ray's worker keeps its own).
"""

from benchmarks.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]  # noqa: F405
DATABASES = {"default": {**DATABASES["default"], "CONN_MAX_AGE": None}}  # noqa: F405
TASKS = {
    **TASKS,  # noqa: F405
    "peer": {"BACKEND": "django_tasks_db.DatabaseBackend"},
}
