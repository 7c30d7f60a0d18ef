"""Any Celery app runs on Ray as it is: at module level, from a factory, configured from
Django settings in ``proj/celery.py``, or built by a test fixture
(test_with_celery_contrib_pytest)."""

from __future__ import annotations

import os

import pytest
from django.test import override_settings

from celery_bridge.config import app_spec
from tests.celery.app import bridge_config
from tests.celery.conftest import NAMESPACE, in_process_worker
from tests.celery.layouts.factory import create_app

pytestmark = [pytest.mark.ray, pytest.mark.django_db(transaction=True)]


def test_an_app_from_a_factory_with_tasks_defined_inside_it(ray_connection, django_db_blocker):
    app = create_app("layouts-factory")
    assert app_spec(app, "host").path == ""  # nothing to import: the app is rebuilt

    with in_process_worker(app, django_db_blocker, hostname=f"factory-{NAMESPACE}@localhost"):
        assert app.tasks["layouts.factory.triple"].delay(14).get(timeout=60) == 42
        seen = app.tasks["layouts.factory.where"].delay().get(timeout=60)

    assert seen["pid"] != os.getpid()  # it ran in a Ray worker process
    assert seen["app"] == "layouts-factory"
    assert seen["max_retries"] == 7  # the task's own options came with it


def celery_django_settings(queue: str) -> dict[str, object]:
    """This session's broker settings, as a Django project writes them (CELERY_*)."""
    config = {**bridge_config(), "task_default_queue": queue}
    return {f"CELERY_{key.upper()}": value for key, value in config.items()}


def test_the_django_guide_layout_configured_from_django_settings(ray_connection, django_db_blocker):
    queue = f"{NAMESPACE}-proj"
    with override_settings(**celery_django_settings(queue), CELERY_PROJ_CUSTOM="from-django"):
        from tests.celery.layouts.proj.celery import app

        app.conf.django_ray_record_executions = False
        # The package does not re-export the app: only Celery's own modules hold it.
        assert not hasattr(__import__("tests.celery.layouts.proj"), "app")
        with in_process_worker(app, django_db_blocker, hostname=f"proj-{NAMESPACE}@localhost"):
            seen = app.tasks["tests.celery.layouts.proj.tasks.settings_seen"].delay()
            result = seen.get(timeout=60)

    assert result["pid"] != os.getpid()
    assert result["main"] == "proj"
    assert result["queue"] == queue  # read from Django settings, namespace CELERY
    assert result["custom"] == "from-django"


def test_an_app_of_the_worker_that_ray_cannot_build_fails_its_tasks_with_the_app_named(
    ray_connection, django_db_blocker
):
    app = create_app("layouts-broken")
    # A task module that exists here but that Ray workers cannot import.
    app.conf.imports = ["tests.celery.layouts.not_on_ray"]

    hostname = f"broken-{NAMESPACE}@localhost"
    with (
        in_process_worker(app, django_db_blocker, hostname=hostname),
        pytest.raises(Exception, match="could not set up the Celery app 'layouts-broken'"),
    ):
        app.tasks["layouts.factory.triple"].delay(1).get(timeout=60)
