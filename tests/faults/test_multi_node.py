"""Placement on a multi-node Ray cluster (a head and two worker nodes, all on 127.0.0.1),
checked through the node each attempt records on its row."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ray.job_submission import JobSubmissionClient

from django_ray.models import TaskExecution
from django_ray.operations.status import collect_status
from tests.faults.helpers import rows_of, started_pids, tally, wait_for
from tests.multi_node import MultiNodeCluster
from tests.ray_cluster import _free_port_slot
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[MultiNodeCluster]:
    """Head: 1 CPU. Node "wide": 2 CPUs. Node "special": 1 CPU and the resource
    ``special``. All on 127.0.0.1, each a raylet of its own."""
    cluster = MultiNodeCluster(
        {
            "head": {"num_cpus": 1},
            "wide": {"num_cpus": 2},
            "special": {"num_cpus": 1, "resources": {"special": 1}},
        },
        dashboard_port=_free_port_slot(),
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_resources_num_cpus_and_spreading_decide_the_node(spawn, markers, three_nodes):
    node = three_nodes.node_ids
    spawn(cluster=three_nodes, runner="ray_core", concurrency=8).worker_id()

    special = [tasks.where_am_i.using(resources={"special": 1}).enqueue() for _ in range(3)]
    wide = [tasks.where_am_i.using(num_cpus=2).enqueue() for _ in range(3)]
    # Four one-CPU tasks at once fill the cluster's four CPUs: every node takes some.
    spread = [
        tasks.started_then_sleep.using(num_cpus=1).enqueue(str(markers), "spread", 4)
        for _ in range(4)
    ]
    ids = [result.id for result in special + wide + spread]
    wait_for(
        lambda: TaskExecution.objects.filter(pk__in=ids, state="SUCCESSFUL").count() == len(ids),
        120,
        "every task to succeed",
    )

    def nodes_of(results: list) -> list[str]:
        rows = TaskExecution.objects.filter(pk__in=[result.id for result in results])
        return sorted(rows.values_list("ray_node", flat=True))

    assert nodes_of(special) == [node["special"]] * 3
    assert nodes_of(wide) == [node["wide"]] * 3
    assert set(nodes_of(spread)) == set(node.values())


def test_a_killed_node_loses_its_attempts_once_and_they_run_again_elsewhere(
    spawn, markers, three_nodes
):
    node = three_nodes.node_ids
    spawn(cluster=three_nodes, runner="ray_core", concurrency=8).worker_id()
    # One-CPU tasks fill the four CPUs; one of them runs on "special" (its only CPU).
    results = [
        tasks.started_then_sleep.using(num_cpus=1, max_attempts=3).enqueue(
            str(markers), "node-death", 8
        )
        for _ in range(4)
    ]
    wait_for(lambda: len(started_pids(markers, "node-death")) == 4, 90, "all four to start")

    three_nodes.kill("special")

    ids = [result.id for result in results]
    wait_for(
        lambda: TaskExecution.objects.filter(pk__in=ids, state="SUCCESSFUL").count() == 4,
        120,
        "every task to succeed on the surviving nodes",
    )
    rows = TaskExecution.objects.filter(pk__in=ids)
    lost = [row for row in rows if row.attempt > 1]
    print(
        f"\n[node death] {[(row.attempt, [e['message'][:80] for e in row.errors]) for row in rows]}"
    )
    assert len(lost) == 1  # the one attempt that ran on the dead node
    (row,) = lost
    assert (row.attempt, row.lost_attempts) == (2, 1)
    assert "node died" in row.errors[0]["message"]
    assert row.ray_node in {node["head"], node["wide"]}
    assert {r.attempt for r in rows if r is not row} == {1}


def test_a_task_for_a_dead_nodes_resource_waits_visibly_until_a_node_with_it_joins(
    spawn, three_nodes
):
    if "special" not in three_nodes.dead:
        three_nodes.kill("special")  # the only node with the resource "special"
    spawn(cluster=three_nodes, runner="ray_core", concurrency=4).worker_id()
    result = tasks.add.using(resources={"special": 1}, max_attempts=1).enqueue(2, 2)

    wait_for(
        lambda: TaskExecution.objects.get(pk=result.id).ray_status == "WAITING_FOR_NODE",
        30,
        "the row to show that no live node has the resource",
    )
    status = collect_status()
    assert [task.id for task in status.waiting] == [result.id]
    assert any("WAITING_FOR_NODE" in sentence for sentence in status.attention)
    assert TaskExecution.objects.get(pk=result.id).state == "RUNNING"

    joined = three_nodes.add("special-2", num_cpus=1, resources={"special": 1})

    wait_for(
        lambda: TaskExecution.objects.get(pk=result.id).state == "SUCCESSFUL",
        60,
        "the task to run on the node that joined",
    )
    row = TaskExecution.objects.get(pk=result.id)
    assert (row.attempt, row.ray_node, row.result_data) == (1, joined, 4)
    assert collect_status().waiting_count == 0


def test_a_ray_job_whose_drivers_node_dies_is_found_dead_and_runs_again(
    spawn, markers, three_nodes
):
    """The job's driver runs on the only node with "special"; that node dies mid-run."""
    if "special-2" not in three_nodes.node_ids:
        three_nodes.add("special-2", num_cpus=1, resources={"special": 1})
    if "special" not in three_nodes.dead:
        three_nodes.kill("special")
    doomed = three_nodes.node_ids["special-2"]
    spawn(cluster=three_nodes, runner="ray_job", concurrency=2).worker_id()
    result = tasks.started_then_sleep.using(resources={"special": 1}, max_attempts=2).enqueue(
        str(markers), "job-node", 60
    )
    wait_for(lambda: started_pids(markers, "job-node"), 90, "the job's task to start")
    handle = TaskExecution.objects.get(pk=result.id).ray_handle
    client = JobSubmissionClient(three_nodes.dashboard_url)
    assert client.get_job_info(handle).driver_node_id == doomed

    three_nodes.kill("special-2")
    replacement = three_nodes.add("special-3", num_cpus=1, resources={"special": 1})

    wait_for(
        lambda: TaskExecution.objects.get(pk=result.id).attempt == 2,
        90,
        "the worker to find the job dead and claim the task again",
    )
    # The second attempt sleeps as long: stop waiting for it once it has started there.
    wait_for(lambda: len(started_pids(markers, "job-node")) == 2, 90, "the second attempt")
    row = TaskExecution.objects.get(pk=result.id)
    print(f"\n[job node death] {[e['message'][:160] for e in row.errors]}")
    assert row.state == "RUNNING" and row.lost_attempts == 1
    (error,) = row.errors
    assert error["exception_class_path"] == "django_ray.runtime.jobs.RayJobFailed"
    assert "died" in error["message"]
    assert error["node"] == doomed
    second = client.get_job_info(row.ray_handle)
    assert second.driver_node_id == replacement
    client.stop_job(row.ray_handle)
    wait_for(
        lambda: TaskExecution.objects.get(pk=result.id).state == "FAILED",
        60,
        "the stopped second attempt to end the task (its last attempt)",
    )


def test_three_workers_run_3000_tasks_once_while_a_worker_and_a_node_are_killed(
    spawn, markers, three_nodes
):
    concurrency, count = 64, 3000
    overrides = {"MAX_TASK_ATTEMPTS": 5}
    workers = [
        spawn(cluster=three_nodes, name=f"w{n}", concurrency=concurrency, overrides=overrides)
        for n in range(3)
    ]
    ids = [worker.worker_id() for worker in workers]
    tokens = [f"m{i:04d}" for i in range(count)]
    results = dict(
        zip(
            tokens,
            [
                r.id
                for r in tasks.mark_execution.enqueue_many(
                    [((str(markers), token, 0), {}) for token in tokens]
                )
            ],
            strict=True,
        )
    )
    finished = TaskExecution.objects.finished

    wait_for(lambda: finished().count() >= count // 4 and rows_of(ids[1]), 240, "a quarter")
    workers[1].kill()
    held_by_killed = rows_of(ids[1])
    wait_for(lambda: finished().count() >= count // 2, 240, "half of the tasks")
    running_at_node_kill = TaskExecution.objects.running().count()
    three_nodes.kill("wide")
    assert finished().count() < count, "the run ended before the node was killed"

    wait_for(lambda: finished().count() == count, 300, f"all {count} tasks")

    rows = list(TaskExecution.objects.filter(pk__in=list(results.values())))
    lost_attempts = sum(row.lost_attempts for row in rows)
    summary = tally(
        "three workers, one node",
        results,
        markers,
        recovery_seconds=0,
        held_by_killed_worker=held_by_killed,
        running_at_node_kill=running_at_node_kill,
        lost_attempts=lost_attempts,
        nodes=sorted({row.ray_node[:8] for row in rows}),
    ).report()
    assert summary.lost == 0
    assert {row.state for row in rows} == {"SUCCESSFUL"}
    # Each extra run was a lost attempt, and only attempts in flight at a kill were lost.
    assert summary.duplicates <= lost_attempts <= held_by_killed + running_at_node_kill
    assert {row.worker_ids[-1] for row in rows} <= set(ids)
    assert workers[0].alive() and workers[2].alive()
