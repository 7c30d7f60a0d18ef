"""Session fixtures: the real services the suite runs against.

Nothing here skips for a missing service: PostgreSQL, or a Ray cluster that
does not start, fails the run with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Both are read when ray is imported, so they are set before anything imports it.
# Keep every address Ray advertises on loopback (by default Ray swaps 127.0.0.1
# for the host's primary interface address).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# The session's cluster and every client of it agree on no token auth, whatever
# ~/.ray/auth_token an earlier local Ray left on this machine.
os.environ["RAY_AUTH_MODE"] = "disabled"

from tests.ray_cluster import LocalRayCluster

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """One local Ray cluster for the whole session, on loopback, stopped by pid at the end."""
    cluster = LocalRayCluster()
    cluster.start(num_cpus=4, resources={"slot": 4})
    try:
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()


@pytest.fixture(scope="session")
def ray_connection(ray_cluster: LocalRayCluster) -> str:
    """This test process connected to the session's cluster, as a worker process would be."""
    from django_ray.runtime.connection import connect

    return connect(ray_cluster.address, {})


# Celery's session worker (celery.contrib.pytest) lives on to the end of the session, and
# two worker threads of one process share Celery's worker state: a module-scoped
# in-process worker that runs while it lives may fail to stop, or take the other's
# tasks. So its module runs last, whatever order pytest-django sorts the rest into.
RUN_LAST = "tests/celery/test_with_celery_contrib_pytest.py"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = [item for item in items if item.nodeid.startswith(RUN_LAST)]
    if last:
        items[:] = [item for item in items if item not in last] + last


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test fails the run: every service must be there."""
    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        print(f"\nCI=true: {skipped} test(s) skipped; nothing may skip in CI.")
        session.exitstatus = 1


@pytest.fixture
def jobs_settings(settings, ray_cluster):
    """Settings under which a Ray Job's entrypoint finds this code and the test database."""
    from django.db import connection

    database = connection.settings_dict
    env_vars = {
        "PYTHONPATH": str(ROOT),
        "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"],
        "DJANGO_RAY_TEST_DATABASE": os.environ.get("DJANGO_RAY_TEST_DATABASE", "postgres"),
    }
    if database["ENGINE"].endswith("sqlite3"):
        env_vars["DJANGO_RAY_TEST_SQLITE_PATH"] = str(database["NAME"])
    else:
        env_vars["DJANGO_RAY_TEST_PG_NAME"] = database["NAME"]
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, "RAY_RUNTIME_ENV": {"env_vars": env_vars}}
    return settings
