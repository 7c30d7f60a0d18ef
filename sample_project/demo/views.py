"""The sample's web side: a page to enqueue tasks and watch them, and a small JSON API."""

import json
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.tasks import TaskResult, TaskResultStatus, default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from demo.catalog import CATALOG, Entry, InvalidArguments
from django_ray.models import TaskExecution

RECENT = 20


def index(request: HttpRequest) -> HttpResponse:
    """The catalog with a form per task, and the latest executions with their outcome."""
    recent = [describe_row(row) for row in TaskExecution.objects.all()[:RECENT]]
    return render(request, "demo/index.html", {"catalog": CATALOG, "recent": recent})


@require_POST
def enqueue_form(request: HttpRequest, name: str) -> HttpResponse:
    entry = _entry(name)
    try:
        result = entry.task.enqueue(**entry.arguments(request.POST.dict()))
    except InvalidArguments as exc:
        messages.error(request, f"{name} was not enqueued: {exc}")
    else:
        messages.success(request, f"Enqueued {name} as {result.id}.")
    return redirect("demo:index")


@require_GET
def api_catalog(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            name: {
                "summary": entry.summary,
                "params": {
                    p.name: {"type": p.kind.__name__, "default": p.default} for p in entry.params
                },
            }
            for name, entry in CATALOG.items()
        }
    )


# No CSRF token: this endpoint reads no cookie and acts for no user, so a
# forged cross-site request could do nothing a direct request cannot.
@csrf_exempt
@require_POST
def api_enqueue(request: HttpRequest, name: str) -> JsonResponse:
    """POST a JSON object of keyword arguments (or nothing, for the defaults)."""
    entry = _entry(name)
    try:
        given = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "The body must be a JSON object."}, status=400)
    if not isinstance(given, dict):
        return JsonResponse({"error": "The body must be a JSON object."}, status=400)
    try:
        result = entry.task.enqueue(**entry.arguments(given))
    except InvalidArguments as exc:
        return JsonResponse({"error": "Invalid arguments.", "problems": exc.problems}, status=400)
    body = describe_result(result)
    body["url"] = request.build_absolute_uri(reverse("demo:api_result", args=[result.id]))
    return JsonResponse(body, status=202)


@require_GET
def api_result(request: HttpRequest, result_id: str) -> JsonResponse:
    """One task's state through Django's Tasks API (``get_result``)."""
    try:
        result = default_task_backend.get_result(result_id)
    except TaskResultDoesNotExist:
        raise Http404(f"No task {result_id}.") from None
    return JsonResponse(describe_result(result))


@require_GET
def api_results(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"results": [describe_row(row) for row in TaskExecution.objects.all()[:RECENT]]}
    )


def describe_result(result: TaskResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": result.id,
        "task": result.task.module_path,
        "status": result.status,
        "args": result.args,
        "kwargs": result.kwargs,
        "attempts": result.attempts,
        "enqueued_at": result.enqueued_at,
        "finished_at": result.finished_at,
        "errors": [
            {"exception": error.exception_class_path, "message": _last_line(error.traceback)}
            for error in result.errors
        ],
    }
    if result.status == TaskResultStatus.SUCCESSFUL:
        data["return_value"] = result.return_value
    return data


def describe_row(row: TaskExecution) -> dict[str, Any]:
    """A row of django-ray's state table, as the page and the list show it."""
    error = row.errors[-1] if row.errors else None
    return {
        "id": str(row.pk),
        "task": row.task_path.rpartition(".")[2],
        "queue": row.queue_name,
        "status": row.state,
        "attempts": row.attempt,
        "args": row.args,
        "kwargs": row.kwargs,
        "call": call_arguments(row.args, row.kwargs),
        "return_value": row.result_data,
        "error": f"{error['exception_class_path']}: {error['message']}" if error else None,
        "enqueued_at": row.enqueued_at,
        "finished_at": row.finished_at,
    }


def call_arguments(args: list[Any], kwargs: dict[str, Any]) -> str:
    """The arguments as the call was written: ``30``, ``"Ray"``, ``limit=100``, ``22, 7``."""
    given = [json.dumps(value) for value in args]
    given += [f"{name}={json.dumps(value)}" for name, value in kwargs.items()]
    return ", ".join(given)


def _entry(name: str) -> Entry:
    if name not in CATALOG:
        raise Http404(f"No task {name!r} in the catalog.")
    return CATALOG[name]


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""
