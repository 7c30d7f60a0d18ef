"""The admin's schedules page: every entry of SCHEDULE, its last run and its next due time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from django_ray.models import Schedule, TaskExecution
from django_ray.scheduling.entries import entries
from django_ray.scheduling.scheduler import Scheduler

pytestmark = pytest.mark.django_db(transaction=True)

SCHEDULE = {
    "tick": {"task": "tests.testapp.tasks.add", "every": 60, "args": [1, 2]},
    "unseen": {"task": "tests.testapp.tasks.add", "cron": "0 3 * * *", "args": [1, 1]},
}


def test_every_entry_shows_with_its_last_run_linked_and_its_next_due_time(admin_client, settings):
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, "SCHEDULE": SCHEDULE}
    Schedule.objects.create(name="retired", runs=2)
    t0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    (tick,) = [entry for entry in entries(SCHEDULE) if entry.name == "tick"]
    scheduler = Scheduler([tick], grace_seconds=600)
    scheduler.tick(t0)
    scheduler.tick(t0 + timedelta(seconds=61))
    run = TaskExecution.objects.get(schedule_name="tick")

    html = admin_client.get(reverse("admin:django_ray_schedule_changelist")).content.decode()

    assert sorted(Schedule.objects.values_list("name", flat=True)) == ["retired", "tick", "unseen"]
    change_url = reverse("admin:django_ray_taskexecution_change", args=[run.pk])
    assert f'<a href="{change_url}">' in html
    assert "every 60 s" in html and "cron &#x27;0 3 * * *&#x27;" in html
    assert "(not in SCHEDULE)" in html
    assert "once a worker with --schedule sees it" in html  # unseen: no row before this page
    assert 'title="2026-12-03 12:02:00+00:00"' in html  # tick's next due time, exactly
    state = Schedule.objects.get(name="unseen")
    assert (state.last_due_at, state.runs) == (None, 0)
