"""Test settings: PostgreSQL by default, SQLite with DJANGO_RAY_TEST_DATABASE=sqlite."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "tests-only-not-a-secret"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_ray",
    "tests.testapp",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_engine = os.environ.get("DJANGO_RAY_TEST_DATABASE", "postgres")
if _engine == "sqlite":
    _sqlite = os.environ.get(
        "DJANGO_RAY_TEST_SQLITE_PATH",
        os.path.join(tempfile.gettempdir(), "django-ray-tests.sqlite3"),
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _sqlite,
            # A file, not memory: worker subprocesses must see the same database.
            "TEST": {"NAME": _sqlite},
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
elif _engine == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DJANGO_RAY_TEST_PG_NAME", "django_ray"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
else:
    raise RuntimeError(f"DJANGO_RAY_TEST_DATABASE must be postgres or sqlite; got {_engine!r}")

TASKS = {
    "default": {
        "BACKEND": "django_ray.backends.RayTaskBackend",
        "QUEUES": ["default", "other"],
    }
}
DJANGO_RAY = {
    "RUNNER": "ray_core",
    "RAY_ADDRESS": os.environ.get("RAY_ADDRESS") or None,
    "DEFAULT_CONCURRENCY": 8,
}
