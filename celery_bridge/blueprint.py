"""What a Ray worker needs to build the pool's Celery app afresh, and the build.

The pool sends the app itself, pickled as Celery pickles apps (its class, name,
loader, fixups and configuration source), plus every setting it resolved, the
modules its tasks come from, and a copy of each task (its function, base and
options). A Ray worker unpickles the app, applies the settings, imports the
modules, and registers the copy of every task the imports did not bring: a
task defined in a test or a factory exists in no module. Nothing depends on
which module, if any, holds the app, so an app built by ``create_app()``, by a
test fixture or in ``proj/celery.py`` runs the same.

Only ``django_ray_app = "module:attribute"`` makes Ray workers import an app
instead (see :func:`celery_bridge.remote.bootstrap`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from celery import Celery

APP_PATH = "django_ray_app"
# The settings Celery's pickled app does not carry and the pool resolves itself:
# environment variables (``-b``, ``--result-backend``) win over the config.
CONNECTION_KEYS = ("broker_url", "broker_read_url", "broker_write_url", "result_backend")
# Class attributes every task class made by ``app.task`` has; the rest are its options.
_TASK_CLASS_KEYS = frozenset(
    {"app", "name", "run", "typing", "__doc__", "__module__", "__annotations__", "__header__",
     "__wrapped__", "__qualname__", "__dict__", "__weakref__"}
)  # fmt: skip
_BUILTIN_MODULE = "celery.app.builtins"


class AppNotRebuildable(ImproperlyConfigured):
    """Something of the app cannot travel to Ray (it cannot be pickled)."""


@dataclass(frozen=True, slots=True)
class TaskCopy:
    """A task as ``app.task`` made it (``fun``), or a class-based task (``cls``): enough to
    register it again on the rebuilt app."""

    name: str
    fun: Any = None
    bind: bool = False
    base: Any = None
    options: Mapping[str, Any] | None = None
    cls: Any = None


@dataclass(frozen=True, slots=True)
class Blueprint:
    """The app's parts, each pickled on its own: a Ray worker loads them in order, once
    Django (for a Django project) is set up."""

    main: str
    app: bytes
    settings: bytes
    modules: tuple[str, ...]
    tasks: bytes
    task_names: tuple[str, ...]

    @property
    def digest(self) -> str:
        parts = (self.app, self.settings, "\n".join(self.modules).encode(), self.tasks)
        return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def capture(app: Celery) -> Blueprint:
    """The blueprint of ``app``, as this worker resolved it; raises :class:`AppNotRebuildable`."""
    for module in app.loader.default_modules:  # ``imports`` and ``include``
        app.loader.import_task_module(module)
    app.finalize(auto=True)
    tasks = [task for task in app.tasks.values() if type(task).__module__ != _BUILTIN_MODULE]
    settings = _pickled_settings(app, resolved_settings(app))  # first: errors name the key
    copies = [task_copy(task) for task in tasks]
    return Blueprint(
        main=str(app.main),
        app=_pickled(app, app, "the app object (its class, loader, fixups or config source)"),
        settings=settings,
        modules=tuple(sorted({type(task).__module__ for task in tasks} - {"__main__"})),
        tasks=_pickled(app, copies, "a task's function, base or options"),
        task_names=tuple(sorted(task.name for task in tasks)),
    )


def resolved_settings(app: Celery) -> dict[str, Any]:
    """Every setting of ``app`` that is not Celery's default, with the connection URLs
    as the worker resolved them.

    For an app configured with a namespace (``config_from_object("django.conf:settings",
    namespace="CELERY")``), only the namespace's keys: the rest of Django's settings
    stay where they are.
    """
    conf = app.conf
    conf.finalize()
    prefix = f"{app.namespace}_" if app.namespace else ""
    settings: dict[str, Any] = {}
    # Celery's own defaults are the last map; the first one holds what was set explicitly.
    for index, mapping in enumerate(conf.maps[:-1]):
        for key in list(mapping):
            if not isinstance(key, str) or key.startswith("_"):
                continue
            if index == 0 or not prefix:
                settings.setdefault(key, mapping[key])
            elif key.startswith(prefix):
                settings.setdefault(key[len(prefix) :].lower(), mapping[key])
    for key in CONNECTION_KEYS:
        if value := connection_value(app, key):
            settings[key] = value
    return settings


def connection_value(app: Celery, key: str) -> Any:
    """A broker or backend URL as Celery resolves it: ``CELERY_<KEY>`` (what ``-b`` and
    ``--result-backend`` set) over the config."""
    return os.environ.get(f"CELERY_{key.upper()}") or app.conf.get(key)


def task_copy(task: Any) -> TaskCopy:
    """A copy of a task made by ``app.task``/``shared_task``, or of a class-based task
    (``app.register_task(MyTask())``, which no module import may repeat)."""
    cls = type(task)
    namespace = vars(cls)
    decorated = namespace.get("_decorated_fun")
    if not namespace.get("_decorated") or decorated is None:
        return TaskCopy(name=task.name, cls=cls)
    parent = cls.__bases__[0]
    # The app's own Task class is not sent: the rebuilt app has its own.
    base = None if "_app" in vars(parent) else parent
    options = {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_")
        and key not in _TASK_CLASS_KEYS
        and not callable(value)
        and not _from_config(task, key, value)
    }
    return TaskCopy(
        name=task.name,
        fun=decorated.__func__ if isinstance(decorated, staticmethod) else decorated,
        bind=not isinstance(namespace.get("run"), staticmethod),
        base=base,
        options=options,
    )


def _from_config(task: Any, key: str, value: Any) -> bool:
    """Whether ``key`` is what binding the task to its app set from the app's settings
    (the rebuilt app sets it again), rather than an option of the task's own."""
    setting = dict(type(task).from_config).get(key)
    return setting is not None and task.app.conf.get(setting) == value


def rebuild(blueprint: Blueprint) -> Celery:
    """The app, unpickled with its settings applied; tasks come with :func:`add_tasks`."""
    import pickle

    app: Celery = pickle.loads(blueprint.app)
    app.conf.update(pickle.loads(blueprint.settings))
    app.set_current()
    app.set_default()
    return app


def add_tasks(app: Celery, blueprint: Blueprint) -> None:
    """Import the tasks' modules, then register a copy of each task they did not bring.

    After the loader's set-up: a Django project's task modules import its models.
    """
    import pickle

    for module in blueprint.modules:
        importlib.import_module(module)
    app.finalize(auto=True)
    missing = set(blueprint.task_names) - set(app.tasks)
    if not missing:
        return
    copies: Iterable[TaskCopy] = pickle.loads(blueprint.tasks)
    for copy in copies:
        if copy.name not in missing:
            continue
        if copy.cls is not None:
            task = copy.cls()
            task.name = task.name or copy.name
            app.register_task(task)
        else:
            app._task_from_fun(
                copy.fun, name=copy.name, base=copy.base, bind=copy.bind, **(copy.options or {})
            )


def _pickled_settings(app: Celery, settings: Mapping[str, Any]) -> bytes:
    for key, value in settings.items():
        _pickled(app, value, f"its setting {key!r}")
    return _pickled(app, dict(settings), "its settings")


def _pickled(app: Celery, value: Any, what: str) -> bytes:
    """``value`` pickled as Ray pickles (functions and classes not importable by name go
    by value)."""
    from ray import cloudpickle

    try:
        dumped: bytes = cloudpickle.dumps(value)
    except Exception as exc:
        raise AppNotRebuildable(
            f"The django_ray pool cannot send the Celery app {app.main!r} to Ray: {what} "
            f"cannot be pickled ({type(exc).__name__}: {exc}). Ray workers rebuild the app "
            "from what the pool sends them. Make that value picklable, or set "
            f"{APP_PATH} = 'module:attribute' to a module-level app that Ray workers "
            "import instead."
        ) from exc
    return dumped
