"""What runs inside a Ray worker: the Celery app, built once per process, runs the tracer.

The set-up is the one prefork gives a child started as a fresh interpreter
(loader init, worker optimizations, one tracer per task, the Django fixup,
``worker_process_init``), so ``bind=True``, ``self.retry``, ``update_state``,
task signals and canvas behave as under prefork. The app is rebuilt from the
blueprint the pool sends (:mod:`celery_bridge.blueprint`), or, when
``django_ray_app`` names one, imported from its module. Log records of each
task go back with its outcome (:mod:`celery_bridge.logs`).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType, SimpleNamespace
from typing import TYPE_CHECKING, Any

from celery_bridge import logs
from celery_bridge.blueprint import APP_PATH, Blueprint, add_tasks, rebuild

if TYPE_CHECKING:
    from celery import Celery

    from django_ray.runtime.remote import Program


@dataclass(frozen=True, slots=True)
class AppSpec:
    """How a Ray worker builds and sets up the worker's Celery app."""

    hostname: str
    blueprint: Blueprint | None = None  # the app to rebuild...
    path: str = ""  # ...or the module:attribute to import it from (django_ray_app)
    # The broker and backend URLs the worker resolved, for an imported app.
    connection: tuple[tuple[str, str], ...] = ()
    log_level: int = logging.WARNING  # records from this level up come home
    restarts: int = 0  # pool restarts before this spec: each gets fresh Ray workers

    @property
    def identity(self) -> str:
        """Which app (which build of it, after how many restarts) this is: Ray workers
        serve one each."""
        app = self.path if self.blueprint is None else self.blueprint.main
        digest = "" if self.blueprint is None else f"@{self.blueprint.digest}"
        return f"{app}{digest}#{self.restarts}"

    @property
    def app_name(self) -> str:
        return self.blueprint.main if self.blueprint is not None else self.path


class AppSetUpFailed(RuntimeError):
    """The Ray worker could not build or set up the Celery app."""


_booted: tuple[AppSpec, Celery] | None = None
_boot_lock = threading.Lock()


def bootstrap(spec: AppSpec) -> Celery:
    """The app of ``spec``, set up in this process on the first call."""
    global _booted
    with _boot_lock:
        if _booted is None:
            _booted = (spec, _set_up(spec))
        booted_spec, app = _booted
    if booted_spec.identity != spec.identity:
        raise RuntimeError(
            f"This Ray worker runs the Celery app {booted_spec.identity!r}; it cannot also run "
            f"{spec.identity!r} (each app gets Ray workers of its own through its runtime_env)."
        )
    return app


def _set_up(spec: AppSpec) -> Celery:
    try:
        return _build(spec)
    except Exception as exc:
        how = (
            f"importing {spec.path!r} ({APP_PATH})"
            if spec.blueprint is None
            else f"rebuilding it from its configuration and task modules "
            f"{list(spec.blueprint.modules)}"
        )
        raise AppSetUpFailed(
            f"A Ray worker could not set up the Celery app {spec.app_name!r} by {how}: "
            f"{type(exc).__name__}: {exc}. Ray workers need the app's code and settings "
            "(the same Python path and DJANGO_SETTINGS_MODULE as the worker, through "
            f"RAY_RUNTIME_ENV); {APP_PATH} = 'module:attribute' names a module-level app "
            "to import instead."
        ) from exc


def _build(spec: AppSpec) -> Celery:
    from celery import signals
    from celery._state import _set_task_join_will_block
    from celery.app import base as app_base
    from celery.app import trace
    from celery.app.utils import find_app
    from celery.worker import state as worker_state

    # A fresh interpreter, as prefork's spawn children are: @app.task binds lazily
    # to the current app, and the Django fixup validates models again.
    os.environ["FORKED_BY_MULTIPROCESSING"] = "1"
    app_base.USING_EXECV = True
    _set_task_join_will_block(True)
    if spec.blueprint is not None:
        app = rebuild(spec.blueprint)
    else:
        app = find_app(spec.path)
        app.conf.update(dict(spec.connection))
    app.loader.init_worker()
    app.loader.init_worker_process()
    app.log.setup(
        spec.log_level, None, redirect_stdouts=False, colorize=False, hostname=spec.hostname
    )
    logs.install(spec.log_level)
    _install_django_fixup(app)
    if spec.blueprint is not None:
        add_tasks(app, spec.blueprint)
    trace.setup_worker_optimizations(app, spec.hostname)
    for name, task in app.tasks.items():
        task.__trace__ = trace.build_tracer(name, task, app.loader, spec.hostname, app=app)
    worker_state.reset_state()
    signals.worker_process_init.send(sender=spec.hostname)
    atexit.register(
        lambda: signals.worker_process_shutdown.send(
            sender=spec.hostname, pid=os.getpid(), exitcode=0
        )
    )
    return app


def _install_django_fixup(app: Celery) -> None:
    """What ``worker_init`` does for the Django fixup in the worker: per-task DB cleanup.

    Only the fixup: ``worker_init`` itself is the worker's signal, as under prefork,
    where pool children never receive it.
    """
    from celery.fixups.django import DjangoFixup

    node = SimpleNamespace(app=app, pool_cls="celery_bridge.pool:RayPool")
    for fixup in getattr(app, "_fixups", ()):
        if isinstance(fixup, DjangoFixup):
            fixup.on_worker_init(sender=node)


Traced = tuple[int, Any, float, list[dict[str, Any]]]


def run_traced(
    spec: AppSpec,
    name: str,
    task_id: str,
    request: dict[str, Any],
    body: bytes,
    content_type: str,
    content_encoding: str,
    soft_time_limit: float | None = None,
) -> Traced:
    """Celery's tracer on one message: ``(failed, result or ExceptionInfo, runtime)``,
    and the log records of the run."""
    from celery.app import trace
    from kombu.serialization import prepare_accept_content

    app = bootstrap(spec)
    where = [app._tasks, prepare_accept_content(app.conf.accept_content), spec.hostname]
    with logs.keeping() as records, soft_limit(soft_time_limit):
        failed, result, runtime = trace.fast_trace_task(
            name, task_id, request, body, content_type, content_encoding, _loc=where
        )
    return failed, result, runtime, records


def run_packed(spec: AppSpec, packed: Sequence[Any]) -> Traced:
    """``run_traced`` on what the pool sends: the tracer's arguments and the soft limit."""
    name, task_id, request, body, content_type, content_encoding, soft_time_limit = packed
    return run_traced(
        spec, name, task_id, request, body, content_type, content_encoding,
        soft_time_limit=soft_time_limit,
    )  # fmt: skip


def program(spec: AppSpec) -> Program:
    """What the pool runs on Ray: the tracer of the app ``spec`` names, set up once per
    Ray worker process (at an actor's start, or on a plain task's first call)."""
    from django_ray.runtime.remote import Program

    return Program(run=run_packed, context=(spec,), warm_up=bootstrap)


@contextmanager
def soft_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``SoftTimeLimitExceeded`` in this thread after ``seconds``, as prefork's child does.

    Ray runs a task in its worker's main thread, where ``SIGALRM`` can interrupt it.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise_soft_time_limit)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _raise_soft_time_limit(signum: int, frame: FrameType | None) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    raise SoftTimeLimitExceeded()
