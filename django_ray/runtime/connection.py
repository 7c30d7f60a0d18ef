"""The only place django-ray calls ``ray.init``."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_ray.addresses import choose_ray_address, classify_ray_address

logger = logging.getLogger("django_ray.runtime")

NAMESPACE = "django_ray"
# The runtime_env this process's Ray connection was made with (the job-level one).
connected_runtime_env: dict[str, Any] | None = None
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_lock = threading.Lock()


def merge_runtime_env(
    base: Mapping[str, Any], override: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A task's runtime_env over the global one: its keys replace the global ones,
    except ``env_vars``, which are merged name by name (the task's win)."""
    merged = dict(base)
    for key, value in (override or {}).items():
        if key == "env_vars":
            merged["env_vars"] = {**(base.get("env_vars") or {}), **value}
        else:
            merged[key] = value
    return merged


def worker_runtime_env(runtime_env: Mapping[str, Any]) -> dict[str, Any]:
    """``RAY_RUNTIME_ENV`` plus what every Ray worker needs to set Django up.

    ``DJANGO_SETTINGS_MODULE`` comes from this process, unless the runtime env
    sets it explicitly (a cluster may use its own settings module).
    """
    merged = dict(runtime_env)
    env_vars = dict(merged.get("env_vars") or {})
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if settings_module:
        env_vars.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    merged["env_vars"] = env_vars
    return merged


def choose_address(*choices: tuple[str, str | None]) -> str | None:
    """The address to connect to: the first set of ``choices`` (``(where, value)``), else
    the ``RAY_ADDRESS`` environment variable, else None (embedded); logged with its source.

    Raises ``ValueError`` when the variable is read and holds no Ray address.
    """
    chosen = choose_ray_address(choices, os.environ)
    logger.info("%s", chosen.describe())
    return chosen.address


def connect(address: str | None, runtime_env: Mapping[str, Any], *, dashboard: bool = False) -> str:
    """Connect this process to Ray once, and return a description of where.

    ``address`` is what :func:`choose_address` returned, the ``RAY_ADDRESS`` environment
    variable already considered: ``None`` starts a local Ray inside this process (the
    embedded default, with ``address="local"`` so Ray does not read the variable again);
    ``"auto"`` joins a cluster already running on this machine; ``host:port``
    and ``ray://host:port`` join that cluster. A Jobs API address
    (``http(s)://``) cannot run Ray Core tasks.
    """
    if classify_ray_address(address) == "local":
        # An embedded Ray is for this machine only: keep it on loopback instead
        # of Ray's default of advertising the primary interface. Ray reads this
        # when it is imported, so it only helps if nothing imported ray yet.
        os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
    import ray

    kind = classify_ray_address(address)
    if kind == "jobs":
        raise ImproperlyConfigured(
            f"RAY_ADDRESS={address!r} is a Ray Jobs API address; the ray_core runner "
            "needs a cluster address: 'auto', 'host:port' or 'ray://host:port'."
        )
    with _lock:
        if ray.is_initialized():
            return address or "local"
        global connected_runtime_env
        connected_runtime_env = worker_runtime_env(runtime_env)
        options: dict[str, Any] = {
            "namespace": NAMESPACE,
            "runtime_env": connected_runtime_env,
            "logging_level": logging.WARNING,
        }
        if kind == "local":
            ray.init(address="local", include_dashboard=dashboard, **options)
        else:
            ray.init(address=address, **options)
        return address or "local"


class RayUnavailable(Exception):
    """Ray (the local raylet, the GCS or the Jobs API) does not answer; nothing was submitted.

    ``unstarted`` names the calls (by key) that were waiting to be sent and were given up.
    """

    def __init__(self, *args: object, unstarted: tuple[Any, ...] = ()) -> None:
        super().__init__(*args)
        self.unstarted = unstarted


def reconnect(address: str | None, runtime_env: Mapping[str, Any]) -> str:
    """Drop this process's Ray connection and connect again (after the cluster restarted)."""
    import ray

    with _lock:
        if ray.is_initialized():
            ray.shutdown()
    return connect(address, runtime_env)


def jobs_api_url(address: str | None, runtime_env: Mapping[str, Any]) -> tuple[str, bool]:
    """The Jobs API (dashboard) URL for ``address``, and whether Ray runs in this process.

    An ``http(s)://`` address is the Jobs API itself. Any other form is joined
    (or, unset, started here with its dashboard) and the cluster's own
    dashboard address is used.
    """
    if classify_ray_address(address) == "jobs":
        assert address is not None
        return address.rstrip("/"), False
    connect(address, runtime_env, dashboard=True)
    from ray._private.worker import get_dashboard_url  # no public accessor in Ray 2.60

    url = get_dashboard_url()
    if not url:
        raise ImproperlyConfigured(
            f"The Ray cluster at RAY_ADDRESS={address!r} runs no dashboard, so it has no "
            "Jobs API; start it with a dashboard or pass the Jobs API address (http://host:port)."
        )
    if "://" not in url:
        url = f"http://{url}"
    return url, address is None
