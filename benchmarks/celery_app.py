"""The Celery app of benchmark B4: a no-op task and a 100 ms sleep, on Redis."""

from __future__ import annotations

import time

from celery import Celery

NAMESPACE = "django-ray-bench"
REDIS = "redis://127.0.0.1:6379/0"

app = Celery("benchmarks.celery_app")
app.conf.update(
    broker_url=REDIS,
    result_backend=REDIS,
    task_default_queue=NAMESPACE,
    control_exchange=NAMESPACE,
    event_exchange=f"{NAMESPACE}.ev",
    broker_transport_options={"global_keyprefix": f"{NAMESPACE}:"},
    accept_content=["json"],
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task
def noop() -> None:
    return None


@app.task
def nap() -> None:
    time.sleep(0.1)


@app.task
def stamp() -> float:
    """When the task started running, on the Ray worker's clock (the same machine)."""
    return time.time()
