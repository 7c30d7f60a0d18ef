"""``manage.py django_ray_status``: print the fleet's status; exit 1 when it needs attention."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_ray.operations.status import collect_status
from django_ray.operations.status_text import render_status


class Command(BaseCommand):
    help = (
        "Show queue depths, the oldest waiting task, workers and their work in flight, "
        "and stuck tasks. Exits with status 1 when something needs attention."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        status = collect_status()
        if options["json"]:
            self.stdout.write(json.dumps(status.as_dict(), indent=2))
        else:
            self.stdout.write(render_status(status))
        attention = status.attention
        if attention:
            raise CommandError("; ".join(attention) + ".", returncode=1)
