"""Settings of the sample project.

With no environment set it is the embedded default: SQLite beside this file
and a Ray started inside the worker process. Environment variables point it
at real infrastructure (see docs/getting-started.md and docs/deployment.md).
Secrets come from the environment; only on a checkout with no
DJANGO_SECRET_KEY is a development key made once and kept in .secret_key.
"""

import importlib.util
import os
from pathlib import Path

from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def _secret_key() -> str:
    """``DJANGO_SECRET_KEY``, or a key made once for this checkout and kept beside it.

    Every process of the project must share one key: it signs sessions, and
    django-ray signs each enqueued task with it (a worker with another key
    fails the task). The file is made atomically by whichever process needs it
    first, and git ignores it.
    """
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        draft = path.with_name(f".secret_key.{os.getpid()}")
        draft.write_text(get_random_secret_key())
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# No secret in the repository: DJANGO_SECRET_KEY in every deployment (all of its
# processes share it); on a checkout, a key made once and kept in .secret_key.
SECRET_KEY = _secret_key()
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto, set DJANGO_HTTPS=1.
if os.environ.get("DJANGO_HTTPS") == "1":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "3600"))
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "sample_project.urls"
WSGI_APPLICATION = "sample_project.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_ray",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The Docker image installs WhiteNoise to serve the admin's static files
# from gunicorn; runserver serves them itself.
if importlib.util.find_spec("whitenoise") is not None:
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

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
STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles"

if os.environ.get("POSTGRES_DB"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["POSTGRES_DB"],
            "USER": os.environ.get("POSTGRES_USER", "postgres"),
            "PASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
            "HOST": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
            "PORT": os.environ.get("POSTGRES_PORT", "5432"),
            "CONN_MAX_AGE": int(os.environ.get("POSTGRES_CONN_MAX_AGE", "60")),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            # Writers take the lock up front instead of failing on upgrade.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }

TASKS = {
    "default": {
        "BACKEND": "django_ray.backends.RayTaskBackend",
        "QUEUES": ["default", "cpu"],
    }
}

DJANGO_RAY = {
    # Unset: each worker starts a Ray of its own (the embedded default).
    "RAY_ADDRESS": os.environ.get("RAY_ADDRESS") or None,
    "RUNNER": "ray_core",
    "DEFAULT_CONCURRENCY": 4,
    # One attempt unless a task asks for more (demo.tasks.flaky does).
    "MAX_TASK_ATTEMPTS": 1,
    # Enqueued by workers started with --schedule (run_demo's worker is).
    "SCHEDULE": {
        "task-counts": {"task": "demo.tasks.task_counts", "every": 2},
    },
}
# Links from the admin to the Ray dashboard (e.g. http://127.0.0.1:8265).
RAY_DASHBOARD_URL = os.environ.get("RAY_DASHBOARD_URL") or None

# The Celery app beside the Django tasks (sample_project/celery.py).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE = {
    "task-counts-every-minute": {
        "task": "sample_project.celery.execution_counts",
        "schedule": 60.0,
    },
}

# The worker prints one line per outcome itself; Django's own task log line
# (logger "django.tasks") would repeat it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.tasks": {"level": "WARNING"}},
}
