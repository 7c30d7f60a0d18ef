"""Settings for the benchmarks: PostgreSQL on 127.0.0.1, a database of their own."""

import os

SECRET_KEY = "benchmarks-only-not-a-secret"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django_ray", "benchmarks"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJANGO_RAY_BENCH_DB", "django_ray_bench"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
}
TASKS = {"default": {"BACKEND": "django_ray.backends.RayTaskBackend"}}
# As the sample project does: RAY_ADDRESS joins a running cluster, unset embeds one.
DJANGO_RAY = {
    "RUNNER": "ray_core",
    "MAX_TASK_ATTEMPTS": 1,
    "RAY_ADDRESS": os.environ.get("RAY_ADDRESS") or None,
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.tasks": {"level": "WARNING"}, "django_ray": {"level": "WARNING"}},
}
