"""Links from the admin to the Ray dashboard page of an attempt."""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from django.conf import settings

from django_ray.states import Runner

DASHBOARD_URL_ENV = "RAY_DASHBOARD_URL"
"""Environment variable with the Ray dashboard's base URL (a ``RAY_DASHBOARD_URL`` setting wins)."""

# A Ray task id is 24 bytes whose last 4 are its job's id; the dashboard's
# task page sits under that job.
_RAY_TASK_ID = re.compile(r"[0-9a-f]{40}(?P<job>[0-9a-f]{8})")


def dashboard_base_url() -> str | None:
    """The dashboard's base URL without its trailing slash, or None where none is set."""
    base = getattr(settings, "RAY_DASHBOARD_URL", None) or os.environ.get(DASHBOARD_URL_ENV)
    return base.rstrip("/") if base else None


def ray_dashboard_url(handle: str, runner: str) -> str | None:
    """The dashboard page of the attempt Ray knows as ``handle``; None without a URL or handle.

    ``ray_job`` attempts link to the job page, ``ray_core`` ones to the task page
    (``#/jobs/<job id>/tasks/<task id>``, the route of the Ray 2.60 dashboard).
    """
    base = dashboard_base_url()
    if base is None or not handle:
        return None
    quoted = quote(handle, safe="")
    if runner == Runner.RAY_JOB:
        return f"{base}/#/jobs/{quoted}"
    task_id = _RAY_TASK_ID.fullmatch(quoted)
    if runner == Runner.RAY_CORE and task_id:
        return f"{base}/#/jobs/{task_id['job']}/tasks/{quoted}"
    return None
