"""Selecting and configuring the pool, without a worker: alias, settings, safety checks."""

from __future__ import annotations

from importlib import metadata

import pytest
from celery import Celery
from celery.exceptions import ImproperlyConfigured
from django.test import override_settings

from celery_bridge import config
from celery_bridge.blueprint import AppNotRebuildable
from celery_bridge.cli import POOL_ALIAS, POOL_PATH, register_pool_alias
from celery_bridge.config import PickleNotAllowed
from celery_bridge.pool import RayPool
from tests.celery.app import app as test_app

WITHOUT_DJANGO_RAY = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tests.testapp",
]


def fresh_app(**conf: object) -> Celery:
    app = Celery("bridge-config-test", set_as_current=False)
    app.conf.update(conf)
    return app


def test_the_distribution_declares_the_celery_commands_entry_point():
    entry_points = metadata.distribution("django-ray").entry_points
    declared = {ep.name: ep.value for ep in entry_points if ep.group == "celery.commands"}

    assert declared == {"django_ray": "celery_bridge.cli:django_ray"}


def test_the_alias_names_the_pool_for_dash_p_and_worker_pool():
    from celery import concurrency
    from celery.bin.worker import WORKERS_POOL

    register_pool_alias()
    register_pool_alias()

    assert concurrency.get_implementation(POOL_ALIAS) is RayPool
    assert concurrency.get_implementation(POOL_PATH) is RayPool
    assert WORKERS_POOL.choices.count(POOL_ALIAS) == 1


def test_an_app_accepting_pickle_is_refused_with_the_opt_in_named():
    app = fresh_app(accept_content=["json", "pickle"])

    with pytest.raises(PickleNotAllowed) as refused:
        RayPool(1, app=app)

    assert str(refused.value) == (
        "The django_ray pool refuses to start: the Celery app accepts 'pickle' "
        "(accept_content=['json', 'pickle'], result_accept_content=None). Whoever can "
        "publish to the broker could then run code in every Ray worker. Remove pickle from "
        "accept_content and result_accept_content, or, if the broker and its clients are "
        "trusted, opt in with django_ray_allow_pickle = True in the Celery configuration "
        '(CELERY_DJANGO_RAY_ALLOW_PICKLE = True in Django settings read with namespace="CELERY").'
    )


def test_pickle_in_result_accept_content_is_refused_too():
    app = fresh_app(result_accept_content=["application/x-python-serialize"])

    with pytest.raises(PickleNotAllowed, match="accepts 'application/x-python-serialize'"):
        RayPool(1, app=app)


def test_the_explicit_opt_in_allows_pickle():
    app = fresh_app(accept_content=["pickle"], django_ray_allow_pickle=True)

    assert RayPool(2, app=app).limit == 2


def test_ray_workers_rebuild_the_app_unless_django_ray_app_names_a_module():
    rebuilt = config.app_spec(test_app, "host")
    assert rebuilt.path == "" and rebuilt.blueprint is not None
    assert rebuilt.blueprint.main == "tests.celery.app"
    assert "tests.celery.tasks" in rebuilt.blueprint.modules
    assert "tests.celery.tasks.add" in rebuilt.blueprint.task_names

    imported = config.app_spec(fresh_app(django_ray_app="proj.celery:app"), "host")
    assert imported.blueprint is None and imported.path == "proj.celery:app"


def test_an_app_that_cannot_be_pickled_is_refused_with_the_setting_named():
    app = fresh_app(beat_schedule={"tick": {"task": "t", "schedule": lambda: None}})
    app.conf.update(custom_lock=__import__("threading").Lock())

    with pytest.raises(AppNotRebuildable, match=r"'custom_lock'.*set django_ray_app"):
        config.app_spec(app, "host")


def test_celery_variables_reach_ray_workers_but_not_the_log_file_nor_credentials():
    environ = {
        "CELERY_BROKER_URL": "redis://:secret@broker",
        "CELERY_RESULT_BACKEND": "redis://:secret@backend",
        "CELERY_CONFIG_MODULE": "proj.celeryconfig",
        "CELERY_LOG_LEVEL": "20",
        "CELERY_LOG_FILE": "/var/log/worker.log",
        "HOME": "/root",
    }

    assert config.forwarded_environ(environ) == {
        "CELERY_CONFIG_MODULE": "proj.celeryconfig",
        "CELERY_LOG_LEVEL": "20",
    }


def test_the_ray_workers_get_the_apps_broker_and_backend_with_the_app():
    app = fresh_app(broker_url="redis://:secret@broker:6379/0", result_backend="redis://b/1")

    assert config.connection_settings(app) == (
        ("broker_url", "redis://:secret@broker:6379/0"),
        ("result_backend", "redis://b/1"),
    )


def test_with_django_ray_installed_django_ray_settings_win(settings):
    settings.DJANGO_RAY = {
        "RAY_ADDRESS": "127.0.0.1:6380",
        "RAY_RUNTIME_ENV": {"env_vars": {"A": "1"}},
        "MAX_TASK_ATTEMPTS": 5,
        "RETRY_BACKOFF_SECONDS": 2,
    }
    app = fresh_app(django_ray_address="ignored:1", django_ray_max_task_attempts=9)

    bridge = config.bridge_settings(app)
    policy = config.retry_policy(app)

    assert (bridge.ray_address, dict(bridge.runtime_env)) == (
        "127.0.0.1:6380",
        {"env_vars": {"A": "1"}},
    )
    assert bridge.record_executions is True
    assert (policy.max_attempts, policy.backoff_seconds) == (5, 2)


def test_with_django_ray_and_no_address_there_the_environment_is_used(settings, monkeypatch):
    settings.DJANGO_RAY = {}
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:7001")

    assert config.bridge_settings(fresh_app(django_ray_address="ignored:1")).ray_address == (
        "127.0.0.1:7001"
    )


def test_an_environment_ray_address_that_is_no_address_stops_the_pool(settings, monkeypatch):
    settings.DJANGO_RAY = {}
    monkeypatch.setenv("RAY_ADDRESS", "ray-head")

    with pytest.raises(ImproperlyConfigured, match=r"^the RAY_ADDRESS environment variable is"):
        config.bridge_settings(fresh_app())


@override_settings(INSTALLED_APPS=WITHOUT_DJANGO_RAY)
def test_without_django_ray_the_app_config_then_the_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:7000")
    configured = fresh_app(
        django_ray_address="127.0.0.1:6390",
        django_ray_max_task_attempts=4,
        django_ray_retry_backoff_seconds=0,
    )

    assert config.bridge_settings(configured).ray_address == "127.0.0.1:6390"
    assert config.bridge_settings(fresh_app()).ray_address == "127.0.0.1:7000"
    assert config.bridge_settings(configured).record_executions is False
    policy = config.retry_policy(configured)
    assert (policy.max_attempts, policy.backoff_seconds) == (4, 0)
    default = config.retry_policy(fresh_app())
    assert (default.max_attempts, default.backoff_seconds) == (3, 60)


def test_rows_can_be_switched_off():
    assert (
        config.bridge_settings(fresh_app(django_ray_record_executions=False)).record_executions
        is False
    )


def test_warm_actors_are_on_unless_switched_off():
    assert config.bridge_settings(fresh_app()).warm_actors is True
    assert config.bridge_settings(fresh_app(django_ray_warm_actors=False)).warm_actors is False


def test_the_installed_celery_is_in_the_pinned_and_tested_range():
    from packaging.requirements import Requirement

    requirements = [Requirement(line) for line in metadata.requires("django-ray") or []]
    pins = [
        requirement.specifier
        for requirement in requirements
        if requirement.name == "celery"
        and requirement.marker is not None
        and requirement.marker.evaluate({"extra": "celery"})
    ]

    assert pins, "django-ray declares no 'celery' extra pinning the supported Celery versions"
    assert metadata.version("celery") in pins[0]
