"""What every benchmark needs: its own PostgreSQL database, a local Ray cluster, a report."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def setup_django() -> None:
    """Point Django at the benchmark settings, create the database if needed, migrate it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    # Ray only on loopback, no token auth for this private cluster (read at import).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sys.path.insert(0, str(ROOT))
    import django
    import psycopg

    from benchmarks import settings

    database = settings.DATABASES["default"]
    with psycopg.connect(
        host=database["HOST"],
        port=database["PORT"],
        user=database["USER"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [database["NAME"]]
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{database["NAME"]}"')
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def ray_cluster(num_cpus: int = 2) -> Iterator[Any]:
    """A private local Ray cluster on loopback, this process connected to it."""
    from tests.ray_cluster import LocalRayCluster

    cluster = LocalRayCluster()
    cluster.start(num_cpus=num_cpus)
    try:
        from django_ray.runtime.connection import connect

        connect(cluster.address, {})
        yield cluster
    finally:
        import ray

        ray.shutdown()
        cluster.stop()


def report(name: str, rows: list[tuple[str, str]], data: dict[str, Any]) -> None:
    """Print a two-column table and write the numbers as JSON under benchmarks/results/."""
    width = max(len(label) for label, _ in rows)
    print(f"\n{name}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name.split(':')[0].lower()}.json"
    path.write_text(json.dumps({"benchmark": name, "measured_at": time.time(), **data}, indent=2))
    print(f"  (written to {path.relative_to(ROOT)})")
