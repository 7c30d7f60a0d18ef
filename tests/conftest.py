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
