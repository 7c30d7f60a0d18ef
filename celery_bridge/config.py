"""What the pool reads from the Celery app, Django's ``DJANGO_RAY`` and the environment.

Precedence, the same for every value: ``DJANGO_RAY`` when Django is configured
with ``django_ray`` installed, else the Celery config (``django_ray_*`` keys;
``CELERY_DJANGO_RAY_*`` in Django settings loaded with ``namespace="CELERY"``),
else the environment (``RAY_ADDRESS``), else django-ray's defaults.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from celery.exceptions import ImproperlyConfigured

from django_ray.conf import DEFAULTS
from django_ray.retry import RetryPolicy

if TYPE_CHECKING:
    from celery import Celery

ALLOW_PICKLE = "django_ray_allow_pickle"
APP_PATH = "django_ray_app"
PICKLE_TYPES = frozenset({"pickle", "application/x-python-serialize"})
# Celery's own variables (config module, loader, log level...) reach the Ray workers,
# which import the app afresh. These stay with the worker process: its log file, and
# every broker or backend URL, which may carry credentials and which Ray shows in a
# runtime_env; the Ray workers get the app's own values with the app (``CONNECTION_KEYS``).
ENV_PREFIX = "CELERY_"
ENV_KEPT_LOCAL = frozenset(
    {
        "CELERY_LOG_FILE", "CELERY_LOG_REDIRECT", "CELERY_LOG_REDIRECT_LEVEL",
        "CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL",
        "CELERY_RESULT_BACKEND",
    }
)  # fmt: skip
CONNECTION_KEYS = ("broker_url", "broker_read_url", "broker_write_url", "result_backend")
APP_ENV = "DJANGO_RAY_CELERY_APP"


class PickleNotAllowed(ImproperlyConfigured):
    """The app accepts pickle and the operator has not opted in."""


class AppNotFound(ImproperlyConfigured):
    """The pool cannot name a module path that imports the Celery app."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeSettings:
    """Everything the pool needs, resolved once when it starts."""

    ray_address: str | None
    runtime_env: Mapping[str, Any]
    ray_options: Mapping[str, Any] = field(default_factory=dict)
    record_executions: bool = True
    warm_actors: bool = True


def django_ray_settings() -> Any | None:
    """django-ray's validated settings when Django is set up with ``django_ray``; else None."""
    from django.apps import apps
    from django.conf import settings

    if not (settings.configured and apps.ready and apps.is_installed("django_ray")):
        return None
    from django_ray.conf import get_settings

    return get_settings()


def bridge_settings(app: Celery) -> BridgeSettings:
    conf = app.conf
    django = django_ray_settings()
    if django is not None:
        address, runtime_env = django.ray_address, dict(django.ray_runtime_env)
    else:
        address = conf.get("django_ray_address") or os.environ.get("RAY_ADDRESS") or None
        runtime_env = dict(conf.get("django_ray_runtime_env") or {})
    return BridgeSettings(
        ray_address=address,
        runtime_env=runtime_env,
        ray_options=dict(conf.get("django_ray_ray_options") or {}),
        record_executions=django is not None and _recording(conf),
        warm_actors=bool(conf.get("django_ray_warm_actors", True)),
    )


def _recording(conf: Any) -> bool:
    return bool(conf.get("django_ray_record_executions", True))


def retry_policy(app: Celery) -> RetryPolicy:
    """The policy for Ray-level losses, read when a loss happens (settings may change)."""
    django = django_ray_settings()
    if django is not None:
        return RetryPolicy.for_task(django, {})
    conf = app.conf
    return RetryPolicy(
        max_attempts=conf.get("django_ray_max_task_attempts") or DEFAULTS["MAX_TASK_ATTEMPTS"],
        backoff_seconds=_first_set(
            conf.get("django_ray_retry_backoff_seconds"), DEFAULTS["RETRY_BACKOFF_SECONDS"]
        ),
        denylist=frozenset(conf.get("django_ray_retry_exception_denylist") or ()),
    )


def check_serializers(app: Celery) -> None:
    """Refuse an app that accepts pickle, unless ``django_ray_allow_pickle`` is set."""
    conf = app.conf
    accepted = {*(conf.accept_content or ()), *(conf.result_accept_content or ())}
    found = sorted(accepted & PICKLE_TYPES)
    if not found or conf.get(ALLOW_PICKLE) is True:
        return
    raise PickleNotAllowed(
        f"The django_ray pool refuses to start: the Celery app accepts {found[0]!r} "
        f"(accept_content={list(conf.accept_content)!r}, "
        f"result_accept_content={conf.result_accept_content!r}). Whoever can publish to the "
        "broker could then run code in every Ray worker. Remove pickle from accept_content "
        "and result_accept_content, or, if the broker and its clients are trusted, opt in "
        f"with {ALLOW_PICKLE} = True in the Celery configuration "
        "(CELERY_DJANGO_RAY_ALLOW_PICKLE = True in Django settings read with "
        'namespace="CELERY").'
    )


def app_path(app: Celery) -> str:
    """``module:attribute`` that imports ``app`` in a fresh process (a Ray worker).

    ``django_ray_app`` in the config wins; otherwise the loaded module holding the
    app is found, the module named after ``app.main`` first.
    """
    configured = app.conf.get(APP_PATH)
    if configured:
        return str(configured)
    found = sorted(_holders(app), key=lambda hit: (hit[0] != app.main, len(hit[0]), hit))
    if not found:
        raise AppNotFound(
            f"The django_ray pool cannot find a module that holds the Celery app {app.main!r}, "
            "so Ray workers could not import it. Define the app at module level (as "
            f"`celery -A module` expects) or set {APP_PATH} = 'module:attribute'."
        )
    module, attribute = found[0]
    return f"{module}:{attribute}"


def _holders(app: Celery) -> Iterator[tuple[str, str]]:
    for name, module in list(sys.modules.items()):
        if name == "__main__" or not isinstance(module, ModuleType):
            continue
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            if value is app and not attribute.startswith("_"):
                yield name, attribute


def forwarded_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of this worker that its Ray workers get too."""
    return {
        name: value
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX) and name not in ENV_KEPT_LOCAL
    }


def connection_settings(app: Celery) -> tuple[tuple[str, str], ...]:
    """The app's broker and backend URLs as this worker resolved them, for its Ray workers.

    They travel with the app's spec (Ray's object store), never in the environment.
    """
    conf = app.conf
    return tuple((key, str(conf.get(key))) for key in CONNECTION_KEYS if conf.get(key))


def _first_set(*values: Any) -> Any:
    return next(value for value in values if value is not None)
