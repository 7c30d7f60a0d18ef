"""The ``celery.commands`` entry point: the ``django_ray`` pool alias and a check command.

Celery loads ``celery.commands`` entry points when its CLI starts, after the
worker command has fixed its ``--pool`` choices; loading this module is the one
hook a package gets there, so registering the alias happens on import (and
nowhere else in this package). ``celery worker -P django_ray`` and
``celery worker --help`` then both know the pool.
"""

from __future__ import annotations

from typing import Any

import click
from celery.bin.base import CeleryCommand

from celery_bridge.pytest_plugin import POOL_ALIAS, POOL_PATH


def register_pool_alias() -> None:
    """Make ``-P django_ray`` (and ``worker_pool = "django_ray"``) name :class:`RayPool`."""
    from celery import concurrency
    from celery.bin import worker

    concurrency.ALIASES.setdefault(POOL_ALIAS, POOL_PATH)
    choices = worker.WORKERS_POOL.choices
    if POOL_ALIAS not in choices:
        worker.WORKERS_POOL.choices = (*choices, POOL_ALIAS)


@click.command(name="django_ray", cls=CeleryCommand)
@click.pass_context
def django_ray(ctx: Any) -> None:
    """Check this app for the django_ray pool: what Ray workers import, where Ray is."""
    from celery_bridge.config import app_spec, bridge_settings, check_serializers, retry_policy

    app = ctx.obj.app
    app.loader.import_default_modules()
    try:
        check_serializers(app)
        spec = app_spec(app, "check")
    except Exception as exc:
        raise click.ClickException(str(exc)) from exc
    if spec.blueprint is None:
        how = f"imported from {spec.path} (django_ray_app)"
    else:
        modules = ", ".join(spec.blueprint.modules) or "none"
        how = f"{spec.app_name}, rebuilt on Ray from its settings; task modules: {modules}"
    settings = bridge_settings(app)
    policy = retry_policy(app)
    ctx.obj.echo(f"app:         {how}")
    ctx.obj.echo(f"ray address: {settings.ray_address or 'local (started in the worker)'}")
    ctx.obj.echo(
        f"ray losses:  {policy.max_attempts} attempts, backoff {policy.backoff_seconds}s "
        "doubling per attempt"
    )
    ctx.obj.echo(f"state rows:  {'recorded' if settings.record_executions else 'not recorded'}")


register_pool_alias()
