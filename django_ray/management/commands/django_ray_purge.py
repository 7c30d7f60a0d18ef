"""``manage.py django_ray_purge``: parse arguments, run a Purge, print what it deleted."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_ray.conf import get_settings
from django_ray.results.errors import ResultStorageError
from django_ray.results.purge import FINISHED_STATES, Purge, cutoff_days_ago


class Command(BaseCommand):
    help = "Delete finished task executions older than --older-than days, and their stored results."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            required=True,
            metavar="DAYS",
            help="Delete executions that finished more than DAYS days ago.",
        )
        parser.add_argument(
            "--state",
            action="append",
            dest="states",
            choices=FINISHED_STATES,
            help="Finished state to delete; repeat for several (default: both).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            metavar="N",
            help="Rows deleted per DELETE statement (default: 500).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days, batch_size = options["older_than"], options["batch_size"]
        if days < 0:
            raise CommandError(f"--older-than must be at least 0; got {days}.")
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1; got {batch_size}.")
        states = tuple(sorted(set(options["states"] or FINISHED_STATES)))
        purge = Purge(cutoff=cutoff_days_ago(days), states=states, batch_size=batch_size)
        if options["dry_run"]:
            report, verb = purge.count(), "Would delete"
        else:
            try:
                report, verb = purge.run(get_settings()), "Deleted"
            except ResultStorageError as exc:
                raise CommandError(f"Purge stopped: {exc}") from exc
        self.stdout.write(
            f"{verb} {report.executions} finished task execution(s) ({', '.join(states)}) "
            f"and {report.payloads} stored result payload(s), finished over {days} day(s) ago."
        )
