"""F3: the Ray cluster stopped and started again under a running ray_core worker."""

from __future__ import annotations

import time

import pytest

from django_ray.models import TaskExecution
from tests.faults.helpers import RestartableCluster, tally, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_cluster():
    """A cluster of this test's own (the session's must stay up), stopped by pid at the end."""
    cluster = RestartableCluster()
    cluster.start(num_cpus=2)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_f3_ray_restarted_under_a_worker(spawn, own_cluster, markers):
    worker = spawn(cluster=own_cluster, concurrency=2)
    worker.worker_id()
    results = {
        f"r{i}": tasks.started_then_sleep.enqueue(str(markers), f"r{i}", 3).id for i in range(3)
    }
    wait_for(
        lambda: sum(markers.count(f"{token}/started") for token in results) >= 2,
        60,
        "two tasks running on Ray",
    )
    stopped_at = time.monotonic()
    own_cluster.restart()
    down_for = time.monotonic() - stopped_at
    wait_for(
        lambda: TaskExecution.objects.finished().count() == len(results) or not worker.alive(),
        60,
        "the tasks in flight at the restart (and the one waiting) to end",
    )
    summary = tally(
        "F3",
        results,
        markers,
        recovery_seconds=time.monotonic() - stopped_at,
        ray_down_seconds=round(down_for, 1),
        states=sorted(TaskExecution.objects.values_list("state", flat=True)),
    ).report()
    assert worker.alive(), worker.output()[-3000:]
    assert summary.lost == 0, TaskExecution.objects.values_list("errors", flat=True)[0][-1]

    # The same worker process carries on with new work.
    after = tasks.started_then_sleep.enqueue(str(markers), "after", 0)
    wait_for(
        lambda: TaskExecution.objects.filter(pk=after.id, state="SUCCESSFUL").exists(),
        30,
        "a task enqueued after the restart",
    )
    assert worker.alive() and worker.starts == 1
