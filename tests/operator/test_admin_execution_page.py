"""The admin page of one execution: its attempt history, its result and its Ray links."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from django_ray.admin import execution_time, format_duration, ray_dashboard_url, turnaround
from django_ray.lifecycle import attempts
from django_ray.lifecycle.errors import error_data
from django_ray.models import TaskExecution
from tests.operator.conftest import execution
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

CORE_HANDLE = "16310a0f0a45af5cffffffffffffffffffffffff02000000"
CORE_HANDLE_2 = "26310a0f0a45af5cffffffffffffffffffffffff02000000"
DASHBOARD = "http://127.0.0.1:8265"


def page(client, row) -> str:
    response = client.get(reverse("admin:django_ray_taskexecution_change", args=[row.pk]))
    assert response.status_code == 200
    return response.content.decode()


NODE_A, NODE_B = "a1" * 28, "b2" * 28  # Ray node ids are 28 bytes, in hex


def history(html: str) -> list[str]:
    """The history table's rows, as text with the tags and extra whitespace left out."""
    table = html[html.index('<fieldset class="module" id="attempts">') :]
    table = table[: table.index("</fieldset>")]
    rows = re.findall(r'<tr class="attempt">(.*?)</tr>', table, re.S)
    cells = (re.sub(r"</?(?:td|br|div|details|summary|pre)\b[^>]*>", " ", row) for row in rows)
    return [" ".join(unescape(re.sub(r"<[^>]+>", "", cell)).split()) for cell in cells]


def run_attempt(worker: str, handle: str) -> TaskExecution:
    """Claim the next attempt on ``worker`` and record its Ray handle, as a worker does."""
    (row,) = attempts.claim(1, worker_id=worker, queues=["default"], runner="ray_core")
    row.ray_handle = handle
    attempts.write_handles([row])
    return row


def test_two_attempts_show_in_order_with_their_workers_handles_and_outcomes(
    admin_client, monkeypatch
):
    monkeypatch.setenv("RAY_DASHBOARD_URL", DASHBOARD)
    tasks.add.enqueue(1, 2)
    first = run_attempt("w1", CORE_HANDLE)
    trace = 'Traceback (most recent call last):\n  File "t.py", line 1\nConnectionError: <gone>\n'
    error = error_data(ConnectionError("database <gone>"), traceback=trace)
    first.ray_node = NODE_A  # as apply_outcome sets it from the attempt's outcome
    attempts.retry(first, error=error, run_after=timezone.now())
    second = run_attempt("w2", CORE_HANDLE_2)
    second.ray_node = NODE_B
    attempts.succeed(second, value=3, now=timezone.now())

    html = page(admin_client, second)

    assert history(html) == [
        f"1 w1 {NODE_A[:12]}… {CORE_HANDLE} Ray dashboard "
        "builtins.ConnectionError: database <gone> "
        'Traceback Traceback (most recent call last): File "t.py", line 1 '
        "ConnectionError: <gone> failed, then retried",
        f"2 w2 {NODE_B[:12]}… {CORE_HANDLE_2} Ray dashboard SUCCESSFUL",
    ]
    assert f'<code title="{NODE_A}">' in html and f'<code title="{NODE_B}">' in html
    # The traceback is folded; each attempt links to its own task page.
    assert (
        "<details><summary>Traceback</summary><pre>Traceback (most recent call last):\n"
        "  File &quot;t.py&quot;, line 1\nConnectionError: &lt;gone&gt;\n</pre></details>"
    ) in html
    for handle in (CORE_HANDLE, CORE_HANDLE_2):
        url = f"{DASHBOARD}/#/jobs/02000000/tasks/{handle}"
        assert f'<a href="{url}" target="_blank" rel="noopener">Ray dashboard</a>' in html


def test_older_errors_without_a_handle_and_a_waiting_retry(admin_client, monkeypatch):
    monkeypatch.delenv("RAY_DASHBOARD_URL", raising=False)
    row = execution(
        state="READY",
        attempt=2,
        runner="ray_job",
        ray_handle="job-2",
        worker_ids=["w1", "w2"],
        errors=[
            {"exception_class_path": "x.Lost", "message": "worker died", "traceback": ""},
            {"exception_class_path": "x.E", "message": "m", "attempt": 2, "ray_handle": "job-2"},
        ],
    )

    html = page(admin_client, row)

    assert history(html) == [
        "1 w1 - - x.Lost: worker died failed, then retried",
        "2 w2 - job-2 x.E: m waiting for its retry",
    ]
    assert "<details>" not in html  # no traceback, nothing to fold
    assert "Ray dashboard</a>" not in html  # no RAY_DASHBOARD_URL


def test_a_cancelled_wait_and_a_running_attempt(admin_client):
    cancelled = execution(
        state="FAILED",
        errors=[{"exception_class_path": "django_ray.cancel.TaskCancelled", "attempt": 0}],
    )
    running = execution(state="RUNNING", attempt=1, worker_ids=["w1"], ray_handle="h")

    assert history(page(admin_client, cancelled)) == [
        "before the first - - - django_ray.cancel.TaskCancelled FAILED"
    ]
    assert history(page(admin_client, running)) == ["1 w1 - h RUNNING"]
    assert "<p>Not attempted yet.</p>" in page(admin_client, execution(state="READY"))


def test_the_result_preview_is_cut_after_2000_characters(admin_client):
    short = execution(state="SUCCESSFUL", result_data={"n": 1})
    long = execution(state="SUCCESSFUL", result_data=["x" * 100] * 50)
    stored = execution(
        state="SUCCESSFUL", result_reference={"backend": "digest", "size": 2048, "sha256": "ab12"}
    )

    assert "<pre>{\n  &quot;n&quot;: 1\n}</pre>" in page(admin_client, short)
    html = page(admin_client, long)
    shown = re.search(r"<pre>(\[\n  &quot;x.*?)\n…</pre>", html, re.S)
    assert shown is not None
    assert len(shown[1].replace("&quot;", '"')) == 2000
    assert '<p class="help">Showing the first 2,000 of 5,302 characters.</p>' in html
    assert (
        "Stored outside the row:<pre>{\n  &quot;backend&quot;: &quot;digest&quot;,\n"
        "  &quot;sha256&quot;: &quot;ab12&quot;,\n  &quot;size&quot;: 2048\n}</pre>"
    ) in page(admin_client, stored)


def test_arguments_and_the_latest_attempts_dashboard_link(admin_client, monkeypatch):
    monkeypatch.setenv("RAY_DASHBOARD_URL", f"{DASHBOARD}/")
    row = execution(
        state="RUNNING",
        runner="ray_job",
        ray_handle="exec-1-attempt-2",
        attempt=2,
        args=[1, "<b>"],
        kwargs={"flag": True},
    )

    html = page(admin_client, row)

    assert "<pre>[\n  1,\n  &quot;&lt;b&gt;&quot;\n]</pre>" in html
    assert "<pre>{\n  &quot;flag&quot;: true\n}</pre>" in html
    url = f"{DASHBOARD}/#/jobs/exec-1-attempt-2"
    assert f'<a href="{url}" target="_blank" rel="noopener">{url}</a>' in html


def test_task_page_costs_a_fixed_number_of_queries(admin_client, django_assert_num_queries):
    row = execution(
        state="FAILED",
        attempt=50,
        errors=[{"exception_class_path": "x.E", "attempt": n} for n in range(1, 51)],
    )
    ContentType.objects.clear_cache()

    # session, user, the row, its content type (for the history link)
    with django_assert_num_queries(4):
        html = page(admin_client, row)

    assert len(history(html)) == 50


def test_dashboard_links_per_runner(monkeypatch, settings):
    monkeypatch.delenv("RAY_DASHBOARD_URL", raising=False)
    assert ray_dashboard_url(CORE_HANDLE, "ray_core") is None

    monkeypatch.setenv("RAY_DASHBOARD_URL", DASHBOARD)
    assert ray_dashboard_url(CORE_HANDLE, "ray_core") == (
        f"{DASHBOARD}/#/jobs/02000000/tasks/{CORE_HANDLE}"
    )
    assert ray_dashboard_url("abc", "ray_job") == f"{DASHBOARD}/#/jobs/abc"
    assert ray_dashboard_url("", "ray_job") is None
    assert ray_dashboard_url("not-a-task-id", "ray_core") is None
    assert ray_dashboard_url(CORE_HANDLE, "") is None

    settings.RAY_DASHBOARD_URL = "https://ray.example.internal/"
    assert ray_dashboard_url("abc", "ray_job") == "https://ray.example.internal/#/jobs/abc"


def test_durations_are_computed_from_the_timestamps():
    now = timezone.now()
    started = now - timedelta(seconds=75)
    enqueued = started - timedelta(minutes=10)
    assert format_duration(execution_time(TaskExecution(), now)) == "-"
    running = TaskExecution(enqueued_at=enqueued, started_at=started, state="RUNNING")
    assert format_duration(execution_time(running, now)) == "1 min 15 s"
    assert format_duration(turnaround(running, now)) == "11 min 15 s"
    finished = TaskExecution(
        enqueued_at=enqueued, started_at=started, finished_at=started + timedelta(seconds=2.25)
    )
    assert format_duration(execution_time(finished, now)) == "2.2 s"
    assert format_duration(turnaround(finished, now)) == "10 min 2 s"
    assert format_duration(timedelta(hours=2, minutes=5, seconds=9)) == "2 h 5 min"
