"""django_ray_status: exact reports over a fleet of rows and leases, and its exit status."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_ray.models import TaskExecution
from django_ray.operations import status as status_module
from django_ray.operations.status import collect_status
from django_ray.operations.status_text import render_status
from tests.operator.conftest import ADD, execution, lease

pytestmark = pytest.mark.django_db

FIXED_NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def seconds_ago(now, seconds):
    return now - timedelta(seconds=seconds)


def build_fleet(now):
    """Three leases, a dozen rows: some healthy, one orphaned, two stuck. Returns the stuck rows."""
    lease("w-alive", expires_in=30, now=now)
    lease("w-expired", expires_in=-30, now=now, hostname="host-2", pid=200, concurrency=2)
    lease("w-gone", expires_in=-3600, now=now, stopping=True)
    execution(state="READY", enqueued_at=seconds_ago(now, 120))
    # Deferred: not due yet, so not waiting.
    execution(state="READY", enqueued_at=seconds_ago(now, 900), run_after=now + timedelta(hours=1))
    # Backed off until 30 s ago: waiting since then, not since it was enqueued.
    execution(
        state="READY",
        queue_name="other",
        enqueued_at=seconds_ago(now, 1000),
        run_after=seconds_ago(now, 30),
    )
    execution(state="RUNNING", worker="w-alive", monitor_heartbeat_at=seconds_ago(now, 999))
    execution(state="RUNNING", worker="w-expired", monitor_heartbeat_at=seconds_ago(now, 10))
    missing = execution(state="RUNNING", queue_name="other", worker="w-missing", attempt=2)
    silent = execution(
        state="RUNNING",
        queue_name="other",
        worker="w-expired",
        attempt=1,
        monitor_heartbeat_at=seconds_ago(now, 400),
    )
    execution(state="SUCCESSFUL")
    execution(state="FAILED", queue_name="other")
    return missing, silent


def worker(worker_id, lease_state, in_flight, now, **fields):
    values = {
        "worker_id": worker_id,
        "lease": lease_state,
        "in_flight": in_flight,
        "origin": "tasks",
        "hostname": "host-1",
        "pid": 100,
        "runner": "ray_core",
        "concurrency": 4,
        "heartbeat_at": seconds_ago(now, 5).isoformat(),
        "stopping": False,
    }
    return {**values, **fields}


def run_status(*args):
    out = StringIO()
    try:
        call_command("django_ray_status", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def test_json_report_of_a_fleet_needing_attention_exits_1():
    now = timezone.now()
    missing, silent = build_fleet(now)

    output, error = run_status("--json")

    report = json.loads(output)
    checked_at = datetime.fromisoformat(report.pop("checked_at"))
    assert now <= checked_at <= timezone.now()
    attention = [
        "worker w-expired holds 2 tasks RUNNING but its lease is expired",
        "worker w-missing holds 1 task RUNNING but its lease is missing",
        "2 tasks stuck: RUNNING with no live worker lease and no monitor heartbeat for 300 s",
    ]
    assert report == {
        "queues": {
            "default": {
                "READY": 2,
                "RUNNING": 2,
                "oldest_ready_age_seconds": 120,
            },
            "other": {
                "READY": 1,
                "RUNNING": 2,
                "oldest_ready_age_seconds": 30,
            },
        },
        "celery_queues": {},
        "workers": {"alive": 1, "expired": 2},
        "in_flight": [
            worker("w-alive", "alive", 1, now),
            worker("w-expired", "expired", 2, now, hostname="host-2", pid=200, concurrency=2),
            {
                "worker_id": "w-missing",
                "lease": "missing",
                "in_flight": 1,
                "origin": "",
                "hostname": "",
                "pid": None,
                "runner": "",
                "concurrency": None,
                "heartbeat_at": None,
                "stopping": False,
            },
        ],
        "stuck_tasks": {
            "count": 2,
            "timeout_seconds": 300,
            "shown": [
                {
                    "id": str(missing.pk),
                    "task_path": ADD,
                    "queue": "other",
                    "worker": "w-missing",
                    "attempt": 2,
                    "monitor_heartbeat_at": None,
                },
                {
                    "id": str(silent.pk),
                    "task_path": ADD,
                    "queue": "other",
                    "worker": "w-expired",
                    "attempt": 1,
                    "monitor_heartbeat_at": seconds_ago(now, 400).isoformat(),
                },
            ],
        },
        "schedules": [],
        "ray_nodes": [],
        "waiting_on_ray": {"count": 0, "shown": []},
        "attention": attention,
    }
    assert error is not None
    assert (error.returncode, str(error)) == (1, "; ".join(attention) + ".")


def test_an_empty_database_is_healthy_and_exits_0():
    output, error = run_status("--json")

    report = json.loads(output)
    del report["checked_at"]
    assert report == {
        "queues": {},
        "celery_queues": {},
        "workers": {"alive": 0, "expired": 0},
        "in_flight": [],
        "stuck_tasks": {"count": 0, "timeout_seconds": 300, "shown": []},
        "schedules": [],
        "ray_nodes": [],
        "waiting_on_ray": {"count": 0, "shown": []},
        "attention": [],
    }
    assert error is None


def test_an_expired_worker_holding_nothing_needs_no_attention(settings):
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, "STUCK_TASK_TIMEOUT_SECONDS": 60}
    now = timezone.now()
    lease("w-old", expires_in=-600, now=now)
    lease("w-live", expires_in=30, now=now)
    execution(state="RUNNING", worker="w-live", monitor_heartbeat_at=None)

    output, error = run_status()

    assert error is None
    assert output.endswith("Nothing needs attention.\n")
    assert collect_status().stuck_task_timeout_seconds == 60


def test_text_report_is_a_set_of_tables():
    missing, silent = build_fleet(FIXED_NOW)

    text = render_status(collect_status(FIXED_NOW))

    assert text.split("\n") == [
        "django-ray status at 2026-03-04T05:06:07+00:00",
        "",
        "QUEUE    READY  RUNNING  OLDEST READY",
        "default  2      2        120 s",
        "other    1      2        30 s",
        "",
        "Workers: 1 alive, 2 expired.",
        "WORKER     LEASE    HOST    PID  RUNNER    IN FLIGHT  LAST HEARTBEAT",
        "w-alive    alive    host-1  100  ray_core  1/4        5 s ago",
        "w-expired  expired  host-2  200  ray_core  2/2        5 s ago",
        "w-missing  missing  -       -    -         1          never",
        "",
        "Stuck tasks: 2.",
        "ID                                    TASK                     QUEUE  WORKER     "
        "ATTEMPT  MONITOR HEARTBEAT",
        f"{missing.pk}  {ADD}  other  w-missing  2        never",
        f"{silent.pk}  {ADD}  other  w-expired  1        400 s ago",
        "",
        "Needs attention:",
        "  - worker w-expired holds 2 tasks RUNNING but its lease is expired.",
        "  - worker w-missing holds 1 task RUNNING but its lease is missing.",
        "  - 2 tasks stuck: RUNNING with no live worker lease and no monitor heartbeat for 300 s.",
    ]


def test_the_report_costs_eleven_queries_whatever_the_history(django_assert_num_queries):
    build_fleet(FIXED_NOW)
    TaskExecution.objects.bulk_create(
        TaskExecution(task_path=ADD, state=("SUCCESSFUL", "FAILED")[i % 2], queue_name=f"q{i % 3}")
        for i in range(10_000)
    )

    with django_assert_num_queries(11):
        status = collect_status(FIXED_NOW)

    # Finished rows are history, not depth: only queues with work to do are listed.
    assert [(queue.queue, queue.counts) for queue in status.queues] == [
        ("default", {"READY": 2, "RUNNING": 2}),
        ("other", {"READY": 1, "RUNNING": 2}),
    ]


def test_only_the_first_stuck_tasks_are_listed(monkeypatch):
    monkeypatch.setattr("django_ray.operations.status.STUCK_TASKS_SHOWN", 2)
    for _ in range(5):
        execution(state="RUNNING", worker="w-nobody")

    status = collect_status()

    assert (status.stuck_count, len(status.stuck)) == (5, 2)
    assert "... and 3 more." in render_status(status).split("\n")


@pytest.mark.django_db(transaction=True)
def test_schedules_show_their_last_and_next_run_and_an_overdue_one_needs_attention(settings):
    from django_ray.models import Schedule
    from django_ray.scheduling.entries import entries
    from django_ray.scheduling.scheduler import Scheduler

    settings.DJANGO_RAY = {
        **settings.DJANGO_RAY,
        "SCHEDULE": {
            "tick": {"task": "tests.testapp.tasks.add", "every": 60, "args": [1, 2]},
            "nightly": {"task": "tests.testapp.tasks.add", "cron": "0 3 * * *", "args": [1, 1]},
        },
    }
    Schedule.objects.create(name="retired", runs=4)
    t0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    scheduler = Scheduler(entries(settings.DJANGO_RAY["SCHEDULE"]), grace_seconds=60)
    scheduler.tick(t0)
    scheduler.tick(t0 + timedelta(seconds=61))  # tick's 12:01 run

    status = collect_status(now=t0 + timedelta(seconds=200))

    by_name = {entry.name: entry for entry in status.schedules}
    assert list(by_name) == ["tick", "nightly", "retired"]
    tick = by_name["tick"]
    assert (tick.when, tick.runs, tick.last_run_at, tick.next_run_at) == (
        "every 60 s",
        1,
        t0 + timedelta(minutes=1),
        t0 + timedelta(minutes=2),
    )
    assert by_name["nightly"].next_run_at == datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    assert (by_name["retired"].when, by_name["retired"].runs) == ("(not in SCHEDULE)", 4)
    # tick's 12:02 run is 80 s late with no scheduler: longer than the lease.
    assert status.attention == [
        "schedule tick has a run due since 2026-12-03 12:02:00+0000 not enqueued: "
        "is a worker running with --schedule?"
    ]
    text = render_status(status)
    assert "SCHEDULE  TASK" in text and "every 60 s" in text and "cron '0 3 * * *'" in text
    assert status.as_dict()["schedules"][0]["next_run_at"] == "2026-12-03T12:02:00+00:00"


def test_attempts_ray_holds_for_resources_are_listed_and_those_no_node_fits_need_attention():
    build_fleet(FIXED_NOW)
    pending = TaskExecution.objects.create(
        task_path=ADD, state="RUNNING", worker="w-alive", ray_status="PENDING"
    )
    no_node = TaskExecution.objects.create(
        task_path=ADD,
        state="RUNNING",
        worker="w-alive",
        ray_status="WAITING_FOR_NODE",
        options={"num_cpus": 2, "resources": {"special": 1}},
    )

    status = collect_status(FIXED_NOW)
    text = render_status(status)

    assert status.waiting_count == 2
    assert {(t.id, t.ray_status) for t in status.waiting} == {
        (str(pending.pk), "PENDING"),
        (str(no_node.pk), "WAITING_FOR_NODE"),
    }
    assert "Waiting on Ray for resources: 2." in text
    assert "num_cpus=2, special=1" in text
    assert (
        "1 task WAITING_FOR_NODE: no live Ray node has the resources asked for; each runs "
        "once a node with them joins"
    ) in status.attention
    assert status.as_dict()["waiting_on_ray"]["count"] == 2


def test_the_latest_tasks_last_attempts_are_counted_by_ray_node(monkeypatch):
    monkeypatch.setattr(status_module, "RECENT_TASKS", 4)
    old = timezone.now() - timedelta(hours=1)
    TaskExecution.objects.create(task_path=ADD, state="FAILED", ray_node="n-old", enqueued_at=old)
    for state, node in [("SUCCESSFUL", "n-a"), ("SUCCESSFUL", "n-a"), ("FAILED", "n-b")]:
        TaskExecution.objects.create(task_path=ADD, state=state, ray_node=node)
    TaskExecution.objects.create(task_path=ADD, state="RUNNING", ray_node="n-b")

    status = collect_status()

    # Only the 4 latest tasks count; a running one has no last attempt yet.
    assert [(n.node, n.succeeded, n.failed) for n in status.nodes] == [("n-a", 2, 0), ("n-b", 0, 1)]
    assert "RAY NODE  SUCCEEDED  FAILED" in render_status(status)
    assert status.as_dict()["ray_nodes"][0] == {"node": "n-a", "succeeded": 2, "failed": 0}
