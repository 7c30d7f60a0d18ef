"""Which attempts in flight ask Ray for more than any live node has.

Ray holds such a task until a node that fits it joins (the cluster autoscales, or a
dead node is replaced), and says nothing to the caller. The worker checks every few
seconds against the live nodes' total resources and marks those attempts
``WAITING_FOR_NODE`` on their rows (``ray_status``), so the admin and
``django_ray_status`` show them; the mark goes once a node that fits joins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

logger = logging.getLogger("django_ray.runtime")

WAITING_FOR_NODE = "WAITING_FOR_NODE"
CHECK_EVERY_SECONDS = 2.0


def demand(options: Mapping[str, Any]) -> dict[str, float]:
    """The resources one attempt asks Ray for (a Ray task takes one CPU unless told)."""
    asked = {
        "CPU": options.get("num_cpus", 1),
        "GPU": options.get("num_gpus", 0),
        "memory": options.get("memory", 0),
        **dict(options.get("resources") or {}),
    }
    return {name: float(amount) for name, amount in asked.items() if amount}


def fits(asked: Mapping[str, float], nodes: Iterable[Mapping[str, float]]) -> bool:
    """Whether some node has, in total, all that is asked."""
    return any(all(node.get(name, 0) >= amount for name, amount in asked.items()) for node in nodes)


def live_node_resources(ray: Any) -> list[dict[str, float]]:
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


class Placement:
    """Watches the attempts in flight for those no live node can ever run."""

    def __init__(self, nodes: Callable[[], list[dict[str, float]]]) -> None:
        self._nodes = nodes
        self._next_check = 0.0
        self.statuses: dict[str, str] = {}

    def check(self, jobs: Mapping[str, Any]) -> None:
        """Every few seconds: mark the jobs (by execution id) that fit no live node, and
        clear the mark of those that fit again. Jobs that ended are forgotten."""
        for execution_id in [key for key in self.statuses if key not in jobs]:
            del self.statuses[execution_id]
        now = time.monotonic()
        if not jobs or now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY_SECONDS
        try:
            nodes = self._nodes()
        except Exception as exc:  # what Ray says of its nodes is a courtesy here
            logger.debug("Could not list Ray's nodes: %s", exc)
            return
        for execution_id, job in jobs.items():
            asked = demand(job.options)
            waiting = self.statuses.get(execution_id) == WAITING_FOR_NODE
            if not fits(asked, nodes):
                if not waiting:
                    logger.warning(
                        "%s [%s] asks for %s, which no live Ray node has: it waits on Ray "
                        "until a node with it joins",
                        *(job.task_path, execution_id, asked),
                    )
                self.statuses[execution_id] = WAITING_FOR_NODE
            elif waiting:
                logger.info("%s [%s] now fits a live Ray node", job.task_path, execution_id)
                self.statuses[execution_id] = ""
