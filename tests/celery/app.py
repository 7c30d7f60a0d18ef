"""The Celery app of the bridge tests.

Its configuration comes from ``CELERY_BRIDGE_TEST_*`` variables, so the test
process, ``celery worker`` subprocesses and Ray workers (which get every
``CELERY_*`` variable of their worker) all build the same app. The namespace
keeps queues, control and event exchanges and Redis keys apart from any other
test run sharing the broker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from celery import Celery

REDIS = "redis://127.0.0.1:6379/0"


def bridge_config(environ: Mapping[str, str] = os.environ) -> dict[str, object]:
    """The settings of every app of the bridge tests: this session's broker namespace."""
    namespace = environ.get("CELERY_BRIDGE_TEST_NAMESPACE", "celery-bridge-tests")
    broker = environ.get("CELERY_BRIDGE_TEST_BROKER", REDIS)
    config: dict[str, object] = {
        "broker_url": broker,
        "result_backend": environ.get("CELERY_BRIDGE_TEST_BACKEND", REDIS),
        "task_default_queue": namespace,
        "control_exchange": namespace,
        "event_exchange": f"{namespace}.ev",
        "accept_content": environ.get("CELERY_BRIDGE_TEST_ACCEPT", "json").split(","),
        "result_expires": 600,
        "broker_connection_retry_on_startup": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
    }
    if broker.startswith("redis"):
        options: dict[str, object] = {"global_keyprefix": f"{namespace}:"}
        if timeout := environ.get("CELERY_BRIDGE_TEST_VISIBILITY_TIMEOUT"):
            options["visibility_timeout"] = float(timeout)
        config["broker_transport_options"] = options
    return config


def make_app(main: str, environ: Mapping[str, str] = os.environ) -> Celery:
    app = Celery(main, include=["tests.celery.tasks"])
    app.conf.update(
        bridge_config(environ),
        django_ray_record_executions=environ.get("CELERY_BRIDGE_TEST_RECORD", "1") == "1",
    )
    if beat_file := environ.get("CELERY_BRIDGE_TEST_BEAT_FILE"):
        app.conf.beat_schedule = {
            "append-pid": {"task": "tests.celery.tasks.append_pid", "schedule": 1.0,
                           "args": (beat_file,)},
        }  # fmt: skip
    if pool := environ.get("CELERY_BRIDGE_TEST_WORKER_POOL"):
        app.conf.worker_pool = pool
    app.conf.worker_pool_restarts = environ.get("CELERY_BRIDGE_TEST_POOL_RESTARTS") == "1"
    return app


app = make_app("tests.celery.app")
