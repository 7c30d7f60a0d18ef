"""The admin: task and worker pages, Ray links, and the retry and cancel actions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from django_ray.admin.changelist import BoundedPaginator, TaskPathFilter
from django_ray.models import TaskExecution
from tests.operator.conftest import ADD, execution, grant, lease

pytestmark = pytest.mark.django_db

TASKS = reverse("admin:django_ray_taskexecution_changelist")
WORKERS = reverse("admin:django_ray_workerlease_changelist")


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


def bulk_rows(count: int, now=None) -> None:
    now = now or timezone.now()
    TaskExecution.objects.bulk_create(
        TaskExecution(
            task_path=f"tests.testapp.tasks.t{i % 3}",
            queue_name=("default", "other")[i % 2],
            state=("READY", "RUNNING", "SUCCESSFUL", "FAILED")[i % 4],
            worker=f"w{i % 7}",
            worker_ids=[f"w{i % 7}"],
            enqueued_at=now - timedelta(seconds=i),
            started_at=now - timedelta(seconds=i) if i % 4 else None,
            finished_at=now if i % 4 > 1 else None,
            errors=[{"exception_class_path": "builtins.ValueError", "traceback": "", "attempt": 1}],
        )
        for i in range(count)
    )


@pytest.mark.parametrize("count", [5, 200])
def test_task_list_costs_the_same_queries_whatever_the_rows(
    admin_client, django_assert_num_queries, count
):
    bulk_rows(count)
    ContentType.objects.clear_cache()  # counted the same whatever ran before

    # session, user, the bounded count, the page, recent queues, recent task paths
    with django_assert_num_queries(6) as queries:
        response = admin_client.get(TASKS, {"enqueued": "24h"})

    assert response.status_code == 200
    changelist = response.context["cl"]
    assert (changelist.result_count, len(changelist.result_list)) == (count, min(count, 100))
    # No query reads the whole table: the count and both filters' lookups stop at a LIMIT.
    sql = [query["sql"] for query in queries.captured_queries]
    assert [bool(re.search(r"LIMIT 10001\b", s)) for s in sql if "COUNT(" in s] == [True]
    assert sum(bool(re.search(r"LIMIT 1000\b", s)) for s in sql) == 2
    # Facet counts (a COUNT per filter choice) are never offered, even when asked for.
    with django_assert_num_queries(6):
        assert admin_client.get(TASKS, {"_facets": "True"}).status_code == 200


def test_task_list_shows_the_short_task_as_the_link_and_relative_times(admin_client):
    now = timezone.now()
    row = execution(
        task_path="tests.testapp.tasks.echo",
        state="FAILED",
        attempt=2,
        enqueued_at=now - timedelta(minutes=3, seconds=5),
        started_at=now - timedelta(minutes=2),
        finished_at=now - timedelta(seconds=5),
    )

    response = admin_client.get(TASKS)

    html = response.content.decode()
    change = reverse("admin:django_ray_taskexecution_change", args=[row.pk])
    assert (
        f'<th class="field-task"><a href="{change}">'
        '<span title="tests.testapp.tasks.echo">tasks.echo</span></a></th>'
    ) in html
    assert '<td class="field-status"><strong style="color: #ba2121">FAILED</strong></td>' in html
    assert '<td class="field-attempt">2</td>' in html
    assert ">3\xa0minutes ago</span></td>" in html
    assert ">2\xa0minutes ago</span></td>" in html
    assert ">5 s ago</span></td>" in html
    # Enqueued to finished.
    assert '<td class="field-duration">3 min 0 s</td>' in html
    assert 'class="field-id"' not in html  # the id is the link's target, not a column


def test_a_count_past_its_bound_says_more_than(admin_client, monkeypatch):
    monkeypatch.setattr(BoundedPaginator, "bound", 150)
    bulk_rows(160)

    response = admin_client.get(TASKS)

    changelist = response.context["cl"]
    assert (changelist.result_count, changelist.paginator.num_pages) == (150, 2)
    html = " ".join(response.content.decode().split())
    assert "More than 150 task executions: counting stops there" in html
    assert "Select all matching task executions (more than 150)" in html
    assert admin_client.get(TASKS, {"p": "3"}).status_code == 302  # no page past the bound

    response = admin_client.get(TASKS, {"state__exact": "FAILED"})
    assert " 40 task executions " in " ".join(response.content.decode().split())


def test_filters_by_enqueue_window_and_by_recent_queues_and_tasks(admin_client, monkeypatch):
    now = timezone.now()
    old = execution(
        task_path="tests.testapp.tasks.echo",
        queue_name="other",
        enqueued_at=now - timedelta(days=40),
    )
    hour = execution(enqueued_at=now - timedelta(minutes=30))
    day = execution(enqueued_at=now - timedelta(hours=5))

    def listed(**query):
        response = admin_client.get(TASKS, query)
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert listed(enqueued="1h") == {hour.pk}
    assert listed(enqueued="24h") == {hour.pk, day.pk}
    assert listed(enqueued="older") == {old.pk}
    assert listed(queue="other") == {old.pk}
    assert listed(task="tests.testapp.tasks.echo") == {old.pk}

    # Offered: the values of the latest rows only, and the one chosen.
    monkeypatch.setattr(TaskPathFilter, "window", 2)
    response = admin_client.get(TASKS)
    offered = {
        spec.title: [c["display"] for c in spec.choices(response.context["cl"])]
        for spec in response.context["cl"].filter_specs
    }
    assert offered["task (recent rows)"] == ["All", ADD]
    response = admin_client.get(TASKS, {"task": "tests.testapp.tasks.echo"})
    offered = {
        spec.title: [c["display"] for c in spec.choices(response.context["cl"])]
        for spec in response.context["cl"].filter_specs
    }
    assert offered["task (recent rows)"] == ["All", ADD, "tests.testapp.tasks.echo"]


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
