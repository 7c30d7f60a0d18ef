"""Enqueue a handful of tasks, run a worker until they are done, print what came back."""

import os
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.tasks import default_task_backend
from django.utils import timezone

from demo import tasks
from django_ray.models import TaskExecution


class Command(BaseCommand):
    help = "Run the django-ray demo on the configured database and Ray."

    def handle(self, *args, **options):
        results = [
            tasks.fibonacci.enqueue(30),
            tasks.fibonacci.enqueue(90),
            tasks.count_primes.enqueue(1_000_000),
            tasks.word_count.enqueue("the quick brown fox jumps over the lazy dog the end"),
            tasks.slow_greeting.enqueue("Ray"),
            tasks.ratio.enqueue(22, 7),
            tasks.ratio.enqueue(1, 0),
            tasks.flaky.enqueue(1),
        ]
        self.stdout.write(f"Enqueued {len(results)} tasks; running a worker until they finish.")
        started, since = time.monotonic(), timezone.now()
        call_command(
            "django_ray_worker",
            "--ray-core",
            "--burst",
            "--schedule",
            verbosity=options["verbosity"],
        )
        elapsed = time.monotonic() - started
        self.stdout.write(f"\nWorker done in {elapsed:.1f}s (driver pid {os.getpid()}):\n")
        for result in results:
            result = default_task_backend.get_result(result.id)
            if result.status == "SUCCESSFUL":
                outcome = repr(result.return_value)
            else:
                outcome = result.errors[-1].traceback.strip().splitlines()[-1]
            self.stdout.write(
                f"  {result.task.name:<14} {result.args!r:<40} {result.status:<10} "
                f"{outcome} (attempts: {result.attempts})"
            )
        runs = TaskExecution.objects.filter(schedule_name="task-counts", enqueued_at__gte=since)
        runs = runs.order_by("scheduled_for")
        self.stdout.write(
            f"\nSchedule task-counts (every 2 s) enqueued {runs.count()} run(s) while the "
            "worker ran:"
        )
        for run in runs[:10]:
            value = run.result_data if run.state == "SUCCESSFUL" else "-"
            self.stdout.write(f"  due {run.scheduled_for:%H:%M:%S}  {run.state:<10} {value}")
