"""What the pool reads from the Celery app, Django's ``DJANGO_RAY`` and the environment.

Precedence, the same for every value: ``DJANGO_RAY`` when Django is configured
with ``django_ray`` installed, else the Celery config (``django_ray_*`` keys;
``CELERY_DJANGO_RAY_*`` in Django settings loaded with ``namespace="CELERY"``),
then, for the address either way, the environment (``RAY_ADDRESS``), then
django-ray's defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery.exceptions import ImproperlyConfigured

from celery_bridge.blueprint import APP_PATH, CONNECTION_KEYS, capture, connection_value
from celery_bridge.remote import AppSpec
from django_ray.addresses import SETTING
from django_ray.conf import DEFAULTS
from django_ray.retry import RetryPolicy
from django_ray.runtime.connection import choose_address

if TYPE_CHECKING:
    from celery import Celery

ALLOW_PICKLE = "django_ray_allow_pickle"
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
APP_ENV = "DJANGO_RAY_CELERY_APP"


class PickleNotAllowed(ImproperlyConfigured):
    """The app accepts pickle and the operator has not opted in."""


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
        configured = (SETTING, django.ray_address)
        runtime_env = dict(django.ray_runtime_env)
    else:
        configured = ("django_ray_address", conf.get("django_ray_address") or None)
        runtime_env = dict(conf.get("django_ray_runtime_env") or {})
    try:
        address = choose_address(configured)
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
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


def app_spec(app: Celery, hostname: str, restarts: int = 0) -> AppSpec:
    """What Ray workers build the app from: its blueprint, or the module ``django_ray_app``
    names. Raises :class:`~celery_bridge.blueprint.AppNotRebuildable`."""
    configured = app.conf.get(APP_PATH)
    level = min(
        logging.getLogger().getEffectiveLevel(), logging.getLogger("celery").getEffectiveLevel()
    )
    if configured:
        return AppSpec(
            hostname=hostname,
            path=str(configured),
            connection=connection_settings(app),
            log_level=level,
            restarts=restarts,
        )
    return AppSpec(hostname=hostname, blueprint=capture(app), log_level=level, restarts=restarts)


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
    values = ((key, connection_value(app, key)) for key in CONNECTION_KEYS)
    return tuple((key, str(value)) for key, value in values if value)


def _first_set(*values: Any) -> Any:
    return next(value for value in values if value is not None)
