"""tests.settings with a broken DJANGO_RAY, to watch start-up validation fail."""

from tests.settings import *  # noqa: F403

DJANGO_RAY = {"RUNNER": "ray", "MAX_TASK_ATEMPTS": 3, "WORKER_HEARTBEAT_SECONDS": 0}
