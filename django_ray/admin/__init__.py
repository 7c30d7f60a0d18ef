"""The Django admin for the state tables: every task with its attempts and Ray links, every
worker, every schedule.

Rows are read-only here: a task changes state only through the ``retry`` and
``cancel`` actions, each behind its own permission. Every list column is
computed from the row itself (or one annotated subquery), and no list query
reads the whole table, so a page costs the same whatever the size of the table.

Each model has its module; importing this package registers them all.
"""

from django_ray.admin.dashboard import DASHBOARD_URL_ENV, ray_dashboard_url
from django_ray.admin.display import execution_time, format_duration, turnaround
from django_ray.admin.executions import TaskExecutionAdmin
from django_ray.admin.schedules import ScheduleAdmin
from django_ray.admin.workers import WorkerLeaseAdmin

__all__ = [
    "DASHBOARD_URL_ENV",
    "ScheduleAdmin",
    "TaskExecutionAdmin",
    "WorkerLeaseAdmin",
    "execution_time",
    "format_duration",
    "ray_dashboard_url",
    "turnaround",
]
