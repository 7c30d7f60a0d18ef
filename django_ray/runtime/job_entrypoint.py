"""Entrypoint of a Ray Job: ``python -m django_ray.runtime.job_entrypoint ID ATTEMPT TOKEN``.

Sets Django up, checks that this attempt still owns the row, runs the task and
records the outcome itself (fenced by attempt and claim token), so the outcome
lands even if the worker that submitted the job is gone.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(
            "usage: python -m django_ray.runtime.job_entrypoint ID ATTEMPT TOKEN", file=sys.stderr
        )
        return 2
    execution_id, attempt, claim_token = argv[0], int(argv[1]), argv[2]

    from django_ray.runtime.execute import ensure_django, run_job

    ensure_django()
    from django.db import transaction
    from django.utils import timezone

    from django_ray.exceptions import InvalidSignature
    from django_ray.lifecycle.outcomes import record_safely
    from django_ray.models import TaskExecution
    from django_ray.runtime.job import Job, Outcome
    from django_ray.signing import verify

    row = TaskExecution.objects.owned_by(execution_id, attempt, claim_token).first()
    if row is None:
        print(f"Attempt {attempt} of {execution_id} no longer owns its row; nothing runs.")
        return 0
    try:
        verify(row)  # before anything the row names is imported
    except InvalidSignature as exc:
        outcome = Outcome.failure(Job.of(row), exc)
    else:
        print(f"Running {row.task_path} [{execution_id}] attempt {attempt}", flush=True)
        outcome = run_job(Job.of(row))
    # The job's fence is its attempt and claim token. The worker monitoring it
    # may have changed meanwhile (adopted after its first worker died), so the
    # outcome is applied to the row as it is now, not as it was at start.
    current = TaskExecution.objects.owned_by(execution_id, attempt, claim_token).first()
    with transaction.atomic():
        owned = current is not None and record_safely(current, outcome, timezone.now())
    row = current or row
    if not owned:
        print("The row was taken over while the task ran; this outcome was not recorded.")
    elif outcome.error:
        print(outcome.error["traceback"], file=sys.stderr)
        print(f"Recorded: {row.state} ({outcome.error['exception_class_path']})")
    else:
        print(f"Recorded: {row.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
