"""The admin: task and worker pages, Ray links, and the retry and cancel actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from django_ray.admin import execution_time, format_duration, ray_dashboard_url
from django_ray.models import TaskExecution
from tests.operator.conftest import ADD, execution, grant, lease

pytestmark = pytest.mark.django_db

TASKS = reverse("admin:django_ray_taskexecution_changelist")
WORKERS = reverse("admin:django_ray_workerlease_changelist")
CORE_HANDLE = "16310a0f0a45af5cffffffffffffffffffffffff02000000"


def act(client, action, rows, **extra):
    """POST an admin action on ``rows``; return the messages shown after the redirect."""
    response = client.post(
        TASKS,
        {"action": action, ACTION_CHECKBOX_NAME: [str(row.pk) for row in rows], **extra},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def states(rows):
    return [TaskExecution.objects.get(pk=row.pk).state for row in rows]


def test_task_list_of_10000_rows_costs_a_fixed_number_of_queries(
    admin_client, django_assert_num_queries
):
    now = timezone.now()
    TaskExecution.objects.bulk_create(
        TaskExecution(
            task_path=ADD,
            queue_name=("default", "other")[i % 2],
            state=("READY", "RUNNING", "SUCCESSFUL", "FAILED")[i % 4],
            worker=f"w{i % 7}",
            enqueued_at=now - timedelta(seconds=i),
            started_at=now - timedelta(seconds=i) if i % 4 else None,
            finished_at=now if i % 4 > 1 else None,
            errors=[{"exception_class_path": "builtins.ValueError", "traceback": "", "attempt": 1}],
        )
        for i in range(10_000)
    )

    ContentType.objects.clear_cache()  # counted the same whatever ran before

    # session, user, page count, the page, distinct queues, distinct task paths
    with django_assert_num_queries(6):
        response = admin_client.get(TASKS)

    assert response.status_code == 200
    changelist = response.context["cl"]
    assert (changelist.result_count, len(changelist.result_list)) == (10_000, 100)


def test_task_detail_costs_a_fixed_number_of_queries(admin_client, django_assert_num_queries):
    row = execution(state="FAILED", errors=[{"exception_class_path": "x.E", "attempt": 1}] * 50)

    ContentType.objects.clear_cache()

    # session, user, the row, its content type (for the history link)
    with django_assert_num_queries(4):
        response = admin_client.get(reverse("admin:django_ray_taskexecution_change", args=[row.pk]))

    assert response.status_code == 200


def test_worker_list_annotates_in_flight_with_one_subquery(admin_client, django_assert_num_queries):
    now = timezone.now()
    for i in range(30):
        lease(f"w{i:02}", expires_in=30 if i % 2 else -30, now=now)
    TaskExecution.objects.bulk_create(
        TaskExecution(
            task_path=ADD, state="RUNNING" if i % 3 else "SUCCESSFUL", worker=f"w{i % 5:02}"
        )
        for i in range(10_000)
    )

    ContentType.objects.clear_cache()

    # session, user, page count, the page (with its in-flight subquery)
    with django_assert_num_queries(4):
        response = admin_client.get(WORKERS)

    rows = {lease.worker_id: lease for lease in response.context["cl"].result_list}
    model_admin = response.context["cl"].model_admin
    assert [model_admin.in_flight(rows[f"w{i:02}"]) for i in range(6)] == [
        1333,
        1333,
        1334,
        1333,
        1333,
        0,
    ]
    assert [model_admin.liveness(rows[f"w{i:02}"]) for i in range(2)] == ["expired", "alive"]


def test_worker_detail_shows_in_flight_and_liveness(admin_client):
    lease("w1", expires_in=30, queues=["default", "other"])
    execution(state="RUNNING", worker="w1")

    response = admin_client.get(reverse("admin:django_ray_workerlease_change", args=["w1"]))

    assert response.status_code == 200
    assert b'<div class="readonly">default, other</div>' in response.content
    assert b'<div class="readonly">alive</div>' in response.content
    assert b'<div class="readonly">1</div>' in response.content


def test_task_detail_shows_attempts_result_pointer_and_dashboard_link(admin_client, monkeypatch):
    monkeypatch.setenv("RAY_DASHBOARD_URL", "http://127.0.0.1:8265/")
    row = execution(
        state="SUCCESSFUL",
        runner="ray_job",
        ray_handle="exec-1-attempt-2",
        attempt=2,
        args=[1, "<b>"],
        kwargs={"flag": True},
        result_reference={"backend": "digest", "size": 2048, "sha256": "ab12"},
        errors=[
            {
                "exception_class_path": "builtins.ValueError",
                "message": "bad <input>",
                "traceback": "Traceback (most recent call last):\nValueError: bad <input>",
                "attempt": 1,
                "worker": "w1",
            }
        ],
    )

    response = admin_client.get(reverse("admin:django_ray_taskexecution_change", args=[row.pk]))

    html = response.content.decode()
    assert (
        "<p><strong>Attempt 1</strong> on w1: <code>builtins.ValueError</code>: bad &lt;input&gt;"
        "</p><pre>Traceback (most recent call last):\nValueError: bad &lt;input&gt;</pre>"
    ) in html
    assert "<pre>[\n  1,\n  &quot;&lt;b&gt;&quot;\n]</pre>" in html
    assert "<pre>{\n  &quot;flag&quot;: true\n}</pre>" in html
    assert (
        "Stored outside the row:<pre>{\n  &quot;backend&quot;: &quot;digest&quot;,\n"
        "  &quot;sha256&quot;: &quot;ab12&quot;,\n  &quot;size&quot;: 2048\n}</pre>"
    ) in html
    assert (
        '<a href="http://127.0.0.1:8265/#/jobs/exec-1-attempt-2" target="_blank" '
        'rel="noopener">http://127.0.0.1:8265/#/jobs/exec-1-attempt-2</a>'
    ) in html


def test_dashboard_links_per_runner(monkeypatch, settings):
    monkeypatch.delenv("RAY_DASHBOARD_URL", raising=False)
    core = TaskExecution(runner="ray_core", ray_handle=CORE_HANDLE)
    job = TaskExecution(runner="ray_job", ray_handle="abc")
    assert ray_dashboard_url(core) is None

    monkeypatch.setenv("RAY_DASHBOARD_URL", "http://127.0.0.1:8265")
    assert ray_dashboard_url(core) == f"http://127.0.0.1:8265/#/jobs/02000000/tasks/{CORE_HANDLE}"
    assert ray_dashboard_url(job) == "http://127.0.0.1:8265/#/jobs/abc"
    assert ray_dashboard_url(TaskExecution(runner="ray_job")) is None
    assert ray_dashboard_url(TaskExecution(runner="ray_core", ray_handle="not-a-task-id")) is None

    settings.RAY_DASHBOARD_URL = "https://ray.example.internal/"
    assert ray_dashboard_url(job) == "https://ray.example.internal/#/jobs/abc"


def test_duration_is_computed_from_the_timestamps():
    now = timezone.now()
    started = now - timedelta(seconds=75)
    assert format_duration(execution_time(TaskExecution(), now)) == "-"
    assert (
        format_duration(execution_time(TaskExecution(started_at=started, state="RUNNING"), now))
        == "1 min 15 s"
    )
    finished = TaskExecution(started_at=started, finished_at=started + timedelta(seconds=2.25))
    assert format_duration(execution_time(finished, now)) == "2.2 s"
    assert format_duration(timedelta(hours=2, minutes=5, seconds=9)) == "2 h 5 min"


def test_search_by_id_and_task_path_and_filter_by_state(admin_client):
    failed = execution(state="FAILED", task_path="tests.testapp.tasks.echo")
    ready = execution(state="READY")

    def listed(**query):
        response = admin_client.get(TASKS, query)
        return {row.pk for row in response.context["cl"].result_list}

    assert listed(q=str(failed.pk)) == {failed.pk}
    assert listed(q="echo") == {failed.pk}
    assert listed(q="not-a-uuid") == set()
    assert listed(state__exact="READY") == {ready.pk}


def test_retry_puts_failed_tasks_back_to_ready_keeping_their_history(admin_client):
    errors = [{"exception_class_path": "builtins.ValueError", "traceback": "", "attempt": 3}]
    later = timezone.now() + timedelta(hours=1)
    failed = [
        execution(
            state="FAILED",
            attempt=3,
            errors=errors,
            run_after=later,
            cancelled_at=timezone.now(),
            finished_at=timezone.now(),
        )
        for _ in range(3)
    ]
    others = [execution(state="READY"), execution(state="SUCCESSFUL")]

    shown = act(admin_client, "retry", failed + others)

    assert shown == ["Retried 3 tasks; 2 skipped because they are not FAILED."]
    assert states(failed + others) == ["READY", "READY", "READY", "READY", "SUCCESSFUL"]
    row = TaskExecution.objects.get(pk=failed[0].pk)
    assert (row.attempt, row.errors, row.run_after, row.cancelled_at, row.finished_at) == (
        3,
        errors,
        None,
        None,
        None,
    )


def test_cancel_fails_ready_tasks_and_marks_running_ones(admin_client):
    fresh = execution(state="READY")
    retrying = execution(state="READY", attempt=2, errors=[{"exception_class_path": "x.E"}])
    running = execution(state="RUNNING", attempt=1, worker="w1")
    done = execution(state="SUCCESSFUL", attempt=1)

    shown = act(admin_client, "cancel", [fresh, retrying, running, done])

    assert shown == [
        "Cancelled 2 READY tasks; marked 1 RUNNING task for the worker to stop; "
        "1 skipped because it had already finished or been cancelled."
    ]
    assert states([fresh, retrying, running, done]) == ["FAILED", "FAILED", "RUNNING", "SUCCESSFUL"]
    fresh, retrying, running, done = (
        TaskExecution.objects.get(pk=row.pk) for row in (fresh, retrying, running, done)
    )
    cancelled = {
        "exception_class_path": "django_ray.cancel.TaskCancelled",
        # One shape for every error: the bases are what a denylist matches by name.
        "exception_bases": ["builtins.Exception", "builtins.BaseException"],
        "message": "Cancelled from the admin by admin",
        "traceback": "",
    }
    assert fresh.errors == [{**cancelled, "attempt": 0}]
    assert retrying.errors == [{"exception_class_path": "x.E"}, {**cancelled, "attempt": 2}]
    assert fresh.cancelled_at == fresh.finished_at == retrying.cancelled_at
    assert running.cancelled_at == fresh.cancelled_at
    assert (running.errors, running.finished_at, done.cancelled_at) == ([], None, None)

    assert act(admin_client, "cancel", [running]) == [
        "Cancelled 0 READY tasks; 1 skipped because it had already finished or been cancelled."
    ]


def test_staff_without_the_permissions_is_offered_no_action_and_changes_nothing(staff_client):
    failed, ready = execution(state="FAILED"), execution(state="READY")

    response = staff_client.get(TASKS)
    assert response.status_code == 200
    assert response.context["action_form"] is None  # not even delete_selected

    assert act(staff_client, "retry", [failed]) == []
    assert act(staff_client, "cancel", [ready]) == []

    assert states([failed, ready]) == ["FAILED", "READY"]


def test_each_action_needs_its_own_permission(staff, staff_client):
    grant(staff, "retry_taskexecution")
    failed, ready = execution(state="FAILED"), execution(state="READY")

    response = staff_client.get(TASKS)
    offered = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert offered == ["", "retry"]

    assert act(staff_client, "cancel", [ready]) == ["No action selected."]
    assert act(staff_client, "retry", [failed]) == ["Retried 1 task."]
    assert states([failed, ready]) == ["READY", "READY"]

    grant(staff, "cancel_taskexecution")
    assert act(staff_client, "cancel", [ready]) == ["Cancelled 1 READY task."]
    assert TaskExecution.objects.get(pk=ready.pk).errors[0]["message"] == (
        "Cancelled from the admin by staff"
    )


def test_tasks_and_workers_cannot_be_added_or_edited(admin_client):
    row = execution(state="READY")
    lease("w1", expires_in=30)

    assert admin_client.get(reverse("admin:django_ray_taskexecution_add")).status_code == 403
    assert admin_client.get(reverse("admin:django_ray_workerlease_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:django_ray_taskexecution_change", args=[row.pk]), {"state": "FAILED"}
    )
    assert response.status_code == 403
    assert TaskExecution.objects.get(pk=row.pk).state == "READY"
    delete = reverse("admin:django_ray_workerlease_delete", args=["w1"])
    assert admin_client.get(delete).status_code == 403


@pytest.mark.django_db
def test_retry_leaves_celery_rows_to_celery():
    from django_ray.lifecycle.operator import retry_failed

    celery_row = TaskExecution.objects.create(
        task_path="proj.tasks.send", state="FAILED", origin="celery", celery_task_id="c-1"
    )
    django_row = TaskExecution.objects.create(task_path="tests.testapp.tasks.add", state="FAILED")

    outcome = retry_failed(TaskExecution.objects.filter(pk__in=[celery_row.pk, django_row.pk]))

    assert str(outcome) == (
        "Retried 1 task; 1 skipped because it came from Celery (send them again through Celery)."
    )
    celery_row.refresh_from_db()
    assert celery_row.state == "FAILED"
