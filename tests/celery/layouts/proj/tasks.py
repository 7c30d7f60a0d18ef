"""The Django project's tasks, found by ``autodiscover_tasks``."""

from __future__ import annotations

import os

from celery import shared_task
from celery.utils.log import get_task_logger

logger = get_task_logger(__name__)


@shared_task(bind=True)
def settings_seen(self) -> dict[str, object]:
    """What the Ray worker's app read from Django settings."""
    logger.info("settings_seen runs in pid %s", os.getpid())
    return {
        "pid": os.getpid(),
        "main": self.app.main,
        "queue": self.app.conf.task_default_queue,
        "custom": self.app.conf.get("proj_custom"),
    }
