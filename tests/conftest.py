"""Session fixtures: the real services the suite runs against.

Nothing here skips for a missing service: PostgreSQL, or a Ray cluster that
does not start, fails the run with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ray_cluster import LocalRayCluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """One local Ray cluster for the whole session, on loopback, stopped by pid at the end."""
    cluster = LocalRayCluster()
    cluster.start(num_cpus=4)
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test fails the run: every service must be there."""
    import os

    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        print(f"\nCI=true: {skipped} test(s) skipped; nothing may skip in CI.")
        session.exitstatus = 1
