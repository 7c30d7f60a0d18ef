"""``celery.contrib.pytest`` with the pool: a project's own Celery tests, run on Ray.

The fixtures are Celery's; only ``celery_worker_pool`` (and the broker, which Ray
workers must reach: memory:// lives in one process) are this project's choice.

Run after every other test (``tests/conftest.py`` moves it last): Celery's session
worker lives on to the end of the session, and two worker threads of one process share
Celery's worker state (seen: the other one then failed to stop, or took its tasks).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from celery import Task

from tests.celery.app import bridge_config
from tests.celery.conftest import NAMESPACE, ray_settings

pytestmark = [pytest.mark.ray, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    return "django_ray"


@pytest.fixture(scope="session")
def celery_config() -> dict[str, object]:
    # A queue of its own: the session worker lives on after this module's tests.
    return {
        **bridge_config(),
        "task_default_queue": f"{NAMESPACE}-contrib",
        "django_ray_record_executions": False,
    }


@pytest.fixture(scope="module", autouse=True)
def _root_log_level_kept() -> Iterator[None]:
    """Celery's test workers set the root logger to their level (ERROR), for good."""
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, object]:
    return {"hostname": f"contrib-{NAMESPACE}@localhost", "shutdown_timeout": 60}


@pytest.fixture(autouse=True)
def _ray_worker_settings(ray_connection, settings) -> None:
    settings.DJANGO_RAY = ray_settings()


def test_celery_worker_runs_a_task_defined_in_the_test_on_ray(celery_app, celery_worker):
    @celery_app.task
    def mul(x: int, y: int) -> tuple[int, int]:
        return x * y, os.getpid()

    celery_worker.reload()  # as Celery's testing guide has it: the pool restarts

    product, pid = mul.delay(4, 4).get(timeout=60)
    assert product == 16
    assert pid != os.getpid()
    assert type(celery_worker.pool).__name__ == "RayPool"


class Doubler(Task):
    name = "contrib.doubler"

    def run(self, x: int) -> int:
        return 2 * x


def test_a_class_based_task_registered_in_the_test_runs_on_ray(celery_app, celery_worker):
    celery_app.register_task(Doubler())
    celery_worker.reload()

    assert celery_app.tasks["contrib.doubler"].delay(21).get(timeout=60) == 42


def test_celery_session_worker_answers_its_ping_and_runs_tasks(
    celery_session_app, celery_session_worker
):
    # The session worker started only once its ping task came back from Ray.
    ping = celery_session_app.tasks["celery.ping"]
    assert ping.delay().get(timeout=60) == "pong"
    assert type(celery_session_worker.pool).__name__ == "RayPool"
