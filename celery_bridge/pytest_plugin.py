"""A pytest plugin, loaded by pytest wherever django-ray is installed: it only names the
pool, so that ``celery.contrib.pytest``'s ``celery_worker_pool`` fixture can return
``"django_ray"`` (the Celery CLI registers the alias itself, see :mod:`celery_bridge.cli`).
"""

from __future__ import annotations

POOL_ALIAS = "django_ray"
POOL_PATH = "celery_bridge.pool:RayPool"


def pytest_configure() -> None:
    try:
        from celery import concurrency
    except ImportError:  # installed without the celery extra
        return
    concurrency.ALIASES.setdefault(POOL_ALIAS, POOL_PATH)
