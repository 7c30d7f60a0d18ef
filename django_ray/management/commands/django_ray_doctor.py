"""``manage.py django_ray_doctor``: check settings, database, migrations, Ray and storage."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from django_ray.operations.doctor import Level, render_checks, run_checks


class Command(BaseCommand):
    help = (
        "Check that this deployment can run tasks: DJANGO_RAY, the database and its "
        "migrations, Ray at RAY_ADDRESS and result storage. Exits with status 1 on any FAIL."
    )
    # The doctor reports what is wrong; Django's own checks must not stop it first.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="Database alias to check (default: default).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=2.0,
            help="Seconds to wait for each network check (default: 2).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checks = run_checks(database=options["database"], timeout=options["timeout"])
        self.stdout.write(render_checks(checks))
        failed = sum(check.level is Level.FAIL for check in checks)
        if failed:
            raise CommandError(f"{failed} check(s) failed.", returncode=1)
