"""Test settings: PostgreSQL by default, SQLite with DJANGO_RAY_TEST_DATABASE=sqlite."""

from __future__ import annotations

import json
import os
import tempfile

SECRET_KEY = "tests-only-not-a-secret"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    # The browser tests' live server serves the admin's CSS and scripts through it.
    "django.contrib.staticfiles",
    "django_ray",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_engine = os.environ.get("DJANGO_RAY_TEST_DATABASE", "postgres")
if _engine == "sqlite":
    # One file per test process (concurrent runs must not share it); processes
    # started by the tests (Ray Jobs, workers) are given its path explicitly.
    _sqlite = os.environ.get("DJANGO_RAY_TEST_SQLITE_PATH") or os.path.join(
        tempfile.gettempdir(), f"django-ray-tests-{os.getpid()}.sqlite3"
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
            # Per process, like the SQLite file: concurrent runs get their own test database.
            "NAME": os.environ.get("DJANGO_RAY_TEST_PG_NAME") or f"django_ray_{os.getpid()}",
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
# Processes the tests start on Ray (Ray Core workers, Ray Jobs) load these
# settings too; a test hands them its overrides as JSON in the environment.
DJANGO_RAY |= json.loads(os.environ.get("DJANGO_RAY_TEST_OVERRIDES") or "{}")
