"""Which attempts in flight no live Ray node can run (WAITING_FOR_NODE), and back."""

from __future__ import annotations

from types import SimpleNamespace

from django_ray.runtime import placement
from django_ray.runtime.placement import WAITING_FOR_NODE, Placement, demand, fits


def test_an_attempt_asks_for_one_cpu_unless_told_and_for_its_resources():
    assert demand({}) == {"CPU": 1.0}
    assert demand({"num_cpus": 0, "resources": {"special": 1}}) == {"special": 1.0}
    assert demand({"num_cpus": 2, "num_gpus": 1, "memory": 100}) == {
        "CPU": 2.0,
        "GPU": 1.0,
        "memory": 100.0,
    }


def test_it_fits_only_a_node_with_all_it_asks_for_at_once():
    nodes = [{"CPU": 4.0}, {"CPU": 1.0, "special": 1.0}]
    assert fits({"CPU": 1.0, "special": 1.0}, nodes)
    assert not fits({"CPU": 2.0, "special": 1.0}, nodes)  # no single node has both
    assert not fits({"CPU": 1.0}, [])


def test_attempts_are_marked_while_no_node_fits_and_cleared_when_one_joins(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(placement.time, "monotonic", lambda: clock[0])
    nodes = [{"CPU": 2.0}]
    watch = Placement(lambda: nodes)
    jobs = {
        "a": SimpleNamespace(task_path="t", options={"resources": {"special": 1}}),
        "b": SimpleNamespace(task_path="t", options={}),
    }

    watch.check(jobs)
    assert watch.statuses == {"a": WAITING_FOR_NODE}

    nodes.append({"CPU": 1.0, "special": 1.0})
    watch.check(jobs)  # too soon: nodes are looked at every few seconds
    assert watch.statuses == {"a": WAITING_FOR_NODE}
    clock[0] += placement.CHECK_EVERY_SECONDS
    watch.check(jobs)
    assert watch.statuses == {"a": ""}  # the row's mark is cleared

    watch.check({"b": jobs["b"]})  # "a" ended
    assert watch.statuses == {}
