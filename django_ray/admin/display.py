"""How the admin writes times, durations and JSON values: short, and bounded in size."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil

from django_ray.models import State, TaskExecution

PREVIEW_CHARS = 2_000
"""How much of a JSON value (result, arguments) a page shows; the rest is left out."""


def execution_time(row: TaskExecution, now: datetime) -> timedelta | None:
    """From the first start to the end (or to ``now`` while RUNNING); None before it started."""
    if row.started_at is None:
        return None
    end = row.finished_at or (now if row.state == State.RUNNING else None)
    return None if end is None else end - row.started_at


def turnaround(row: TaskExecution, now: datetime) -> timedelta:
    """From enqueue to the end, or to ``now`` while the task has not finished."""
    return (row.finished_at or now) - row.enqueued_at


def format_duration(elapsed: timedelta | None) -> str:
    if elapsed is None:
        return "-"
    seconds = elapsed.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def relative(moment: datetime | None, now: datetime) -> str:
    """``moment`` as a person reads it in a list: "42 s ago", "3 minutes ago", "in 2 hours"."""
    if moment is None:
        return "-"
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return f"in {timeuntil(moment, now, depth=1)}"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    return f"{timesince(moment, now, depth=1)} ago"


def moment_html(moment: datetime | None, now: datetime) -> SafeString | str:
    """The relative time, with the exact one as its tooltip."""
    if moment is None:
        return "-"
    exact = timezone.localtime(moment).isoformat(sep=" ", timespec="seconds")
    return format_html('<span title="{}">{}</span>', exact, relative(moment, now))


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON, cut after :data:`PREVIEW_CHARS` characters with a note."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    if len(text) <= PREVIEW_CHARS:
        return format_html("<pre>{}</pre>", text)
    return format_html(
        '<pre>{}\n…</pre><p class="help">Showing the first {} of {} characters.</p>',
        text[:PREVIEW_CHARS],
        f"{PREVIEW_CHARS:,}",
        f"{len(text):,}",
    )


def result_preview(row: TaskExecution) -> SafeString | str:
    """The start of the row's result, or the reference to where it is stored."""
    if row.result_reference is not None:
        return format_html("Stored outside the row:{}", pretty_json(row.result_reference))
    if row.state == State.SUCCESSFUL:
        return pretty_json(row.result_data)
    return "-"
