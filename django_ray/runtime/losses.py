"""How a call on Ray ended when it did not return: the one classification of losses.

Ray reports an infrastructure failure as an exception where the call's value
would be. Both paths ask :func:`classify` what it was: the program's own error
(Ray re-raises what the function raised), or a loss (the worker process or its
node died, the call was cancelled or timed out, Ray itself is gone).
"""

from __future__ import annotations

import enum
from typing import Any

from django_ray.lifecycle.errors import error_data
from django_ray.runtime.connection import RayUnavailable


class Loss(enum.StrEnum):
    CANCELLED = "cancelled"
    TIMED_OUT = "timed out"
    WORKER_DIED = "worker died"
    NODE_DIED = "node died"
    RAY_GONE = "Ray unavailable"
    RAY_FAILED = "Ray could not run it"


def classify(exc: BaseException, local_node: str = "") -> Loss | None:
    """What ``exc``, raised by Ray for a call, says happened; None: the program raised it.

    ``local_node`` is the id of this process's own Ray node: when that node died,
    Ray is gone for this process, whatever node the call ran on.
    """
    from ray import exceptions

    if isinstance(
        exc, RayUnavailable | exceptions.RaySystemError | exceptions.LocalRayletDiedError
    ):
        return Loss.RAY_GONE
    if isinstance(exc, exceptions.TaskCancelledError):
        return Loss.CANCELLED
    if isinstance(exc, exceptions.NodeDiedError):
        return Loss.RAY_GONE if local_node and local_node in str(exc) else Loss.NODE_DIED
    if isinstance(exc, exceptions.RayTaskError):
        return None
    if isinstance(exc, exceptions.RayActorError) and _says_its_node_died(exc):
        return Loss.NODE_DIED
    if isinstance(
        exc,
        exceptions.WorkerCrashedError
        | exceptions.RayActorError
        | exceptions.ObjectLostError
        | exceptions.OwnerDiedError
        | exceptions.OutOfMemoryError,
    ):
        return Loss.WORKER_DIED
    return Loss.RAY_FAILED


def _says_its_node_died(exc: BaseException) -> bool:
    # Ray gives an actor's death cause only as text ("... because its node has died").
    return "node has died" in str(exc).lower()


def loss_error(loss: Loss, exc: BaseException) -> dict[str, Any]:
    """The error data of a lost call: Ray's exception, its message led by what happened."""
    return error_data(exc, f"Ray lost the attempt ({loss}): {exc}")
