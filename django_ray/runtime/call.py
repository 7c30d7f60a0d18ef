"""One call on Ray, as :class:`~django_ray.runtime.calls.Calls` keeps it, and how it ended."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django_ray.runtime.losses import Loss

if TYPE_CHECKING:
    from django_ray.runtime.actors import WarmActors


@dataclass(frozen=True, slots=True)
class Ended:
    """How one call ended: ``value`` if the program returned, else ``error`` and ``loss``
    (``loss`` None with an ``error``: the program itself raised it)."""

    key: Hashable
    handle: str
    value: Any = None
    error: BaseException | None = None
    loss: Loss | None = None

    @property
    def returned(self) -> bool:
        return self.error is None and self.loss is None


@dataclass(eq=False, slots=True)
class Chunk:
    """One call to a warm actor, running one or more calls in order."""

    members: list[Call]
    actor: Any
    pool: WarmActors
    lane: bool = False  # sent by ``Calls.flush`` (counted against its lanes)
    killed: bool = False  # by a cancel: the members still running end with it


@dataclass(eq=False, slots=True, kw_only=True)
class Call:
    """A call submitted (or waiting for its time), until it ends."""

    key: Hashable
    payload: Any
    options: Mapping[str, Any]
    soft_limit: float | None = None
    hard_limit: float | None = None
    not_before: float = 0.0
    kind: Hashable = None  # calls of one kind take about as long (a task's name)
    queued: bool = False  # waits for a chunk (see ``Calls.flush``)
    handle: str = ""
    ref: Any = None
    chunk: Chunk | None = None  # on a warm actor; None for a plain Ray task
    started: float = 0.0
    soft_warned: bool = False
    stopped: Loss | None = None  # why it was cancelled, once it was
