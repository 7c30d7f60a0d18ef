"""The Celery pool on a multi-node Ray cluster: a head without CPUs, where the workers'
drivers connect, and two worker nodes, "a" and "b", all on 127.0.0.1.

Two ``celery worker -P django_ray -c 4`` processes share the cluster: one whose retry
policy runs a lost attempt again, one whose policy gives up at once (as prefork does).
Their warm actors spread over both nodes; one node is then killed while each worker has
a task running there, and one of them an idle actor waiting there too. Each task's
marker file says where it ran and how often; Ray's state API says where the actors are.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from billiard.exceptions import WorkerLostError
from celery.result import AsyncResult

from tests.celery import tasks
from tests.celery.app import REDIS
from tests.celery.conftest import NAMESPACE, WorkerProcess, inspect, launch_worker, wait_until
from tests.multi_node import MultiNodeCluster
from tests.ray_cluster import _free_port_slot

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
SLOTS = 4  # -c 4: four warm actors per worker
TIMEOUT = 60
POLICIES = {
    "retries": {"MAX_TASK_ATTEMPTS": 3, "RETRY_BACKOFF_SECONDS": 0},
    "gives-up": {"MAX_TASK_ATTEMPTS": 1},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[MultiNodeCluster]:
    """Head: no CPU, so no actor or task runs beside the drivers. "a", "b": 2 CPUs each."""
    cluster = MultiNodeCluster(
        {"head": {"num_cpus": 0}, "a": {"num_cpus": 2}, "b": {"num_cpus": 2}},
        dashboard_port=_free_port_slot(),
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Pool:
    """One worker of the module: its queue, and its Ray job (the driver of its pool)."""

    worker: WorkerProcess
    queue: str
    job_id: str = ""

    def actors(self, cluster: MultiNodeCluster) -> list[Any]:
        return [actor for actor in live_actors(cluster) if actor.job_id == self.job_id]

    def processes(self) -> list[int]:
        """The Ray worker processes of the pool's started actors, from ``inspect stats``
        (asking also lets the pool start its next actors, two at a time)."""
        stats = inspect(self.worker.name).stats() or {}
        return sorted(stats.get(self.worker.name, {}).get("pool", {}).get("processes", []))

    def own_job(self, cluster: MultiNodeCluster) -> str | None:
        """The Ray job of the pool's actors, once all of them have started."""
        pids = self.processes()
        jobs = {actor.job_id for actor in live_actors(cluster) if actor.pid in pids}
        return jobs.pop() if len(pids) == SLOTS and len(jobs) == 1 else None

    def started_actors(self, cluster: MultiNodeCluster) -> list[Any] | None:
        """The pool's live actors, once it has started ``SLOTS`` of them."""
        actors = self.actors(cluster)
        if len(actors) == SLOTS and sorted(actor.pid for actor in actors) == self.processes():
            return actors
        return None


def live_actors(cluster: MultiNodeCluster) -> list[Any]:
    """Every live warm actor of the cluster, from Ray's state API."""
    from ray.util.state import list_actors

    filters = [("class_name", "=", "WarmWorker"), ("state", "=", "ALIVE")]
    return list_actors(address=cluster.dashboard_url, filters=filters, limit=1000)


@pytest.fixture(scope="module")
def pools(
    cluster: MultiNodeCluster, django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[dict[str, Pool]]:
    """A worker per policy, each on a queue of its own and writing execution rows."""
    logs = tmp_path_factory.mktemp("multi-node-logs")
    started: dict[str, Pool] = {}
    try:
        for name, policy in POLICIES.items():
            queue = f"{NAMESPACE}.{name}"
            env = {
                "CELERY_BRIDGE_TEST_RECORD": "1",
                "DJANGO_RAY_TEST_OVERRIDES": json.dumps(policy),
            }
            args = ("-P", "django_ray", "-c", str(SLOTS), "-Q", queue)
            worker = launch_worker(cluster, logs / f"{name}.log", *args, env=env, wait=False)
            started[name] = Pool(worker, queue)
        for pool in started.values():
            pool.worker.wait_ready()
            pool.job_id = wait_until(
                lambda pool=pool: pool.own_job(cluster), timeout=TIMEOUT, interval=0.2
            )
        yield started
    finally:
        for pool in started.values():
            pool.worker.stop()
        from django_ray.models import TaskExecution

        with django_db_blocker.unblock():
            TaskExecution.objects.filter(origin="celery").delete()


@dataclass
class Held:
    """A ``held_on_node`` task: the Ray node and actor of each of its runs."""

    name: str
    directory: Path
    result: AsyncResult

    def runs(self) -> list[tuple[str, str]]:
        path = self.directory / self.name
        lines = path.read_text().splitlines() if path.exists() else []
        return [(node, actor) for node, _, actor in (line.split() for line in lines)]

    def release(self) -> None:
        (self.directory / f"{self.name}.go").touch()


def hold(pool: Pool, directory: Path, count: int) -> list[Held]:
    """``count`` held tasks on the pool's queue, returned once each is running."""
    directory.mkdir(parents=True, exist_ok=True)
    held = [
        Held(
            name,
            directory,
            tasks.held_on_node.apply_async((str(directory), name), queue=pool.queue),
        )
        for name in (f"task-{i}" for i in range(count))
    ]
    wait_until(lambda: all(task.runs() for task in held), timeout=TIMEOUT)
    return held


@dataclass
class NodeDeath:
    """What each worker's tasks did around the death of one node, ``victim``."""

    victim: str
    survivor: str
    before: dict[str, list[Any]]  # each worker's actors before it
    killed: dict[str, list[Held]] = field(default_factory=dict)  # running on the victim
    others: dict[str, list[Held]] = field(default_factory=dict)  # on the survivor, or done
    idle: list[str] = field(default_factory=list)  # workers with an actor idle there
    rows: dict[str, Any] = field(default_factory=dict)  # execution rows, by Celery task id

    def lost(self, pool: str) -> set[str]:
        return {actor.actor_id for actor in self.before[pool] if actor.node_id == self.victim}


def victim_of(cluster: MultiNodeCluster, before: dict[str, list[Any]]) -> str:
    """The worker node to kill: the one where the worker with fewest actors there has most
    (each has at least one there, and one of them at least two)."""

    def held_there(name: str) -> tuple[int, int]:
        counts = [
            sum(a.node_id == cluster.node_ids[name] for a in actors) for actors in before.values()
        ]
        return min(counts), max(counts)

    return max(["a", "b"], key=held_there)


@pytest.fixture(scope="module")
def node_death(
    cluster: MultiNodeCluster, pools: dict[str, Pool], django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[NodeDeath]:
    """Each worker runs a task per actor. On the node to kill, one of them ends first where
    there are two or more (its actor waits there, idle); then the node is killed, and once
    every lost task was retried or given up, every task still held is released."""
    before = {name: pool.actors(cluster) for name, pool in pools.items()}
    victim = victim_of(cluster, before)
    survivor = "b" if victim == "a" else "a"
    node, markers = cluster.node_ids, tmp_path_factory.mktemp("held")
    death = NodeDeath(node[victim], node[survivor], before)
    everything: list[Held] = []
    try:
        for name, pool in pools.items():
            held = hold(pool, markers / name, SLOTS)
            everything += held
            assert all(actor != "None" for task in held for _, actor in task.runs())  # on actors
            there = [task for task in held if task.runs()[0][0] == death.victim]
            if len(there) > 1:
                there[0].release()
                assert there.pop(0).result.get(timeout=TIMEOUT) == death.victim
                death.idle.append(name)
            death.killed[name] = there
            death.others[name] = [task for task in held if task not in there]
        assert death.idle, f"no worker has an idle actor on the node to kill: {before}"

        cluster.kill(victim)

        for task in death.killed["retries"]:
            wait_until(lambda task=task: len(task.runs()) == 2, timeout=TIMEOUT)
        for task in death.killed["gives-up"]:
            task.result.get(timeout=TIMEOUT, propagate=False)
    finally:
        for task in everything:
            task.release()
    for task in everything:
        task.result.get(timeout=TIMEOUT, propagate=False)
    ids = [task.result.id for task in everything]
    with django_db_blocker.unblock():
        from django_ray.models import TaskExecution

        def ended() -> dict[str, Any] | None:
            rows = TaskExecution.objects.filter(
                celery_task_id__in=ids, state__in=["SUCCESSFUL", "FAILED"]
            )
            found = {row.celery_task_id: row for row in rows}
            return found if len(found) == len(ids) else None

        death.rows = wait_until(ended, timeout=TIMEOUT)
    yield death


def test_warm_actors_spread_over_the_nodes(cluster, pools):
    node = cluster.node_ids
    for pool in pools.values():
        actors = pool.actors(cluster)

        assert len(actors) == SLOTS
        assert {actor.node_id for actor in actors} == {node["a"], node["b"]}


def test_tasks_lost_with_their_node_run_again_on_a_surviving_node(node_death):
    killed = node_death.killed["retries"]

    assert killed
    for task in killed:
        assert task.result.get(timeout=TIMEOUT) == node_death.survivor
        # One run more, on the surviving node; one attempt lost, never another one on
        # an actor that had died idle with the node.
        assert [node for node, _ in task.runs()] == [node_death.victim, node_death.survivor]
        row = node_death.rows[task.result.id]
        assert (row.state, row.attempt, row.lost_attempts) == ("SUCCESSFUL", 1, 1)
        assert "(node died)" in row.errors[0]["message"]
    for task in node_death.others["retries"]:
        assert (task.result.state, len(task.runs())) == ("SUCCESS", 1)


def test_a_policy_that_gives_up_gives_celery_worker_lost_error(node_death):
    killed = node_death.killed["gives-up"]

    assert killed
    lost = r"ActorDiedError: Ray lost the attempt \(node died\).*not retried: attempt 1 of 1"
    for task in killed:
        with pytest.raises(WorkerLostError, match=lost):
            task.result.get(timeout=TIMEOUT)
        assert (task.result.state, len(task.runs())) == ("FAILURE", 1)
        row = node_death.rows[task.result.id]
        assert (row.state, row.lost_attempts) == ("FAILED", 0)
        assert row.errors[-1]["exception_class_path"] == "billiard.exceptions.WorkerLostError"
    for task in node_death.others["gives-up"]:
        assert (task.result.state, len(task.runs())) == ("SUCCESS", 1)


def test_the_pool_replaces_the_actors_it_lost(cluster, pools, node_death, tmp_path):
    for name, pool in pools.items():

        def replaced(pool: Pool = pool) -> list[Any] | None:
            # Each round takes actors, and never a dead one (under the policy that
            # gives up, a task sent to one would fail here with WorkerLostError).
            results = [tasks.actor_id.apply_async(queue=pool.queue) for _ in range(SLOTS)]
            for result in results:
                result.get(timeout=TIMEOUT)
            return pool.started_actors(cluster)

        actors = wait_until(replaced, timeout=TIMEOUT, interval=0.2)
        ids = {actor.actor_id for actor in actors}
        assert {actor.node_id for actor in actors} == {node_death.survivor}
        kept = {actor.actor_id for actor in node_death.before[name]} - node_death.lost(name)
        assert len(ids - kept) == len(node_death.lost(name))

        held = hold(pool, tmp_path / name, SLOTS)  # one per actor: all of them take one
        try:
            assert {actor for task in held for _, actor in task.runs()} == ids
        finally:
            for task in held:
                task.release()
        assert [task.result.get(timeout=TIMEOUT) for task in held] == [node_death.survivor] * SLOTS


def test_every_message_was_acknowledged_and_every_result_stored(pools, node_death):
    client = redis.Redis.from_url(REDIS)
    with contextlib.closing(client):
        wait_until(lambda: client.hlen(f"{NAMESPACE}:unacked") == 0)
        assert [client.llen(f"{NAMESPACE}:{pool.queue}") for pool in pools.values()] == [0, 0]
    lost = len(node_death.killed["gives-up"])
    everything = [
        task for held in (*node_death.killed.values(), *node_death.others.values()) for task in held
    ]
    states = Counter(task.result.state for task in everything)
    assert states == {"FAILURE": lost, "SUCCESS": len(everything) - lost}
