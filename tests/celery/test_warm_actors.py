"""The pool's warm actors on a real Ray cluster: started ahead, reused, resized, replaced."""

from __future__ import annotations

import time

import pytest

from celery_bridge.remote import AppSpec, program
from celery_bridge.runs import Runs
from django_ray.retry import RetryPolicy
from django_ray.runtime.actors import WarmActors
from tests.celery.conftest import wait_until

pytestmark = pytest.mark.ray

SPEC = AppSpec(hostname="warm-actors-test@localhost", path="tests.celery.app:app")
PROGRAM = program(SPEC)
POLICY = RetryPolicy(max_attempts=1, backoff_seconds=0)


def runs(ray_options: dict, **kwargs: bool) -> Runs:
    return Runs(SPEC, {}, ray_options, deliver=print, policy=lambda: POLICY, **kwargs)


def take_ready(actors: WarmActors) -> object:
    return wait_until(actors.take, timeout=60, interval=0.1)


def test_actors_start_ahead_and_are_reused(ray_connection):
    actors = WarmActors(PROGRAM, {})
    actors.resize(2)

    first = take_ready(actors)
    second = take_ready(actors)
    assert first is not second
    assert actors.take() is None  # two busy: a third task would run as a plain Ray task

    actors.give_back(first)
    assert actors.take() is first
    actors.resize(0)
    actors.give_back(first)
    actors.give_back(second)
    assert actors.take() is None


def test_there_are_never_more_actors_than_the_cluster_has_cpus(ray_connection):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    actors = WarmActors(PROGRAM, {})
    actors.resize(cpus + 3)

    taken = [take_ready(actors) for _ in range(cpus)]

    assert len(set(taken)) == cpus
    assert actors.take() is None
    actors.resize(0)
    for actor in taken:
        actors.give_back(actor)


def test_a_killed_actor_is_replaced(ray_connection):
    import ray

    actors = WarmActors(PROGRAM, {})
    actors.resize(1)
    actor = take_ready(actors)

    actors.kill(actor)
    replacement = take_ready(actors)

    assert replacement is not actor
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.__ray_ready__.remote(), timeout=30)
    actors.resize(0)
    actors.give_back(replacement)


def test_an_actor_that_died_idle_is_never_taken_and_is_replaced(ray_connection):
    import ray

    actors = WarmActors(PROGRAM, {})
    actors.resize(1)
    actor = take_ready(actors)
    actors.give_back(actor)
    ray.kill(actor, no_restart=True)  # dies waiting, as the actors on a node that died
    deadline = time.monotonic() + 30
    while True:  # until Ray has told this process (a call may still beat the kill)
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=30)
        except ray.exceptions.RayActorError:
            break
        assert time.monotonic() < deadline, "the killed actor still answers"
        time.sleep(0.1)

    replacement = take_ready(actors)

    assert replacement is not actor
    actors.resize(0)
    actors.give_back(replacement)


def test_only_tasks_that_ask_ray_for_nothing_special_use_actors(ray_connection):
    assert runs({}).uses_actors
    assert not runs({}, warm_actors=False).uses_actors
    assert not runs({"num_cpus": 2}).uses_actors
