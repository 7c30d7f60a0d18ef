"""The doctor's checks: is this deployment able to run tasks, and if not, what to fix.

Each check returns a :class:`Check` with a level (OK, WARN, FAIL), what was
found, and for anything short of OK a hint. Network checks use a short
timeout and never import Ray: a TCP connect or one HTTP request is enough to
tell an operator whether the address is right.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from enum import StrEnum
from importlib import metadata

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from django_ray.addresses import SETTING, choose_ray_address
from django_ray.conf import (
    DjangoRaySettingsError,
    RaySettings,
    classify_ray_address,
    get_settings,
)


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str
    hint: str = ""


def run_checks(database: str = "default", timeout: float = 2.0) -> list[Check]:
    """Every check, in the order an operator would fix things."""
    settings_check, settings = check_settings()
    database_check = check_database(database)
    checks = [settings_check, database_check]
    if database_check.level is Level.FAIL:
        checks.append(Check("migrations", Level.WARN, "not checked: the database is unreachable."))
    else:
        checks.append(check_migrations(database))
    if settings is None:
        skipped = "not checked: DJANGO_RAY is invalid."
        checks += [Check("ray", Level.WARN, skipped), Check("storage", Level.WARN, skipped)]
    else:
        checks += [check_chosen_ray(settings.ray_address, timeout), check_storage(settings)]
    return checks


def check_settings() -> tuple[Check, RaySettings | None]:
    try:
        settings = get_settings()
    except DjangoRaySettingsError as error:
        problems = "\n".join(f"- {problem}" for problem in error.problems)
        return Check(
            "settings",
            Level.FAIL,
            f"DJANGO_RAY is invalid:\n{problems}",
            "fix DJANGO_RAY in your settings; docs/configuration.md lists every key.",
        ), None
    return Check("settings", Level.OK, "DJANGO_RAY is valid."), settings


def check_database(alias: str) -> Check:
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except (DatabaseError, ImproperlyConfigured) as error:
        return Check(
            "database",
            Level.FAIL,
            f"cannot query database {alias!r} ({connection.vendor}): {_first_line(error)}",
            f"check DATABASES[{alias!r}] and that the database server is running.",
        )
    return Check("database", Level.OK, f"database {alias!r} ({connection.vendor}) answers.")


def check_migrations(alias: str) -> Check:
    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes("django_ray"))
    pending = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
    if pending:
        return Check(
            "migrations",
            Level.FAIL,
            f"{len(pending)} migration(s) not applied: {', '.join(pending)}.",
            "run: manage.py migrate",
        )
    return Check("migrations", Level.OK, "every django_ray migration is applied.")


def check_chosen_ray(configured: str | None, timeout: float) -> Check:
    """:func:`check_ray` for the address a worker would choose: the setting, else the
    ``RAY_ADDRESS`` environment variable of this process."""
    try:
        chosen = choose_ray_address([(SETTING, configured)], os.environ)
    except ValueError as error:
        return Check("ray", Level.FAIL, str(error), "fix or unset RAY_ADDRESS here.")
    check = check_ray(chosen.address, timeout)
    if chosen.source in (SETTING, None):
        return check
    where = f"The address comes from {chosen.source}, as {SETTING} is unset."
    return replace(check, detail=f"{check.detail} {where}")


def check_ray(address: str | None, timeout: float) -> Check:
    """Whether the worker will find Ray at ``address`` (already validated by the settings)."""
    kind = classify_ray_address(address)
    if kind == "local":
        return Check(
            "ray",
            Level.OK,
            "RAY_ADDRESS is None: each worker starts an embedded local Ray (development).",
        )
    if kind == "auto":
        return Check(
            "ray",
            Level.WARN,
            'RAY_ADDRESS is "auto": the worker joins the Ray cluster started on its own '
            "machine; not checked from here.",
            "run `ray status` on the worker's machine to see that cluster.",
        )
    assert address is not None
    if kind == "jobs":
        return _check_jobs_api(address, timeout)
    host, port = _host_port(address.removeprefix("ray://"))
    what, flag = (
        ("Ray Client server", "--ray-client-server-port")
        if kind == "client"
        else (
            "Ray GCS",
            "--port",
        )
    )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return Check(
            "ray",
            Level.FAIL,
            f"cannot reach the {what} at {address}: {error}",
            f"start the Ray head with `ray start --head {flag}={port}` there, or fix "
            'DJANGO_RAY["RAY_ADDRESS"].',
        )
    return Check("ray", Level.OK, f"the {what} at {address} accepts connections.")


def _check_jobs_api(address: str, timeout: float) -> Check:
    url = f"{address.rstrip('/')}/api/version"
    hint = (
        "start the Ray dashboard there (ray start --head --dashboard-host=...), or fix "
        'DJANGO_RAY["RAY_ADDRESS"].'
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            remote = json.loads(response.read())["ray_version"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason: object = error
        if isinstance(error, urllib.error.URLError) and not isinstance(
            error, urllib.error.HTTPError
        ):
            reason = error.reason  # the socket's error, not "<urlopen error ...>"
        return Check("ray", Level.FAIL, f"no Ray Jobs API at {url}: {reason}", hint)
    local = metadata.version("ray")
    if remote != local:
        return Check(
            "ray",
            Level.WARN,
            f"the Ray Jobs API at {address} runs Ray {remote}; this machine has Ray {local}.",
            f"install ray=={remote} here; Ray needs the same version on both sides.",
        )
    return Check("ray", Level.OK, f"the Ray Jobs API at {address} answers (Ray {remote}).")


def check_storage(settings: RaySettings) -> Check:
    """Whether oversized results can be stored where ``RESULT_STORAGE_BACKEND`` says."""
    backend = settings.result_storage_backend
    if backend == "digest":
        return Check(
            "storage",
            Level.OK,
            'RESULT_STORAGE_BACKEND is "digest": oversized results keep only a digest pointer.',
        )
    if backend == "filesystem":
        return _check_directory(settings.result_storage_filesystem_path or "")
    bucket = (
        settings.result_storage_s3_bucket
        if backend == "s3"
        else (settings.result_storage_gcs_bucket)
    )
    return Check(
        "storage",
        Level.WARN,
        f'RESULT_STORAGE_BACKEND is "{backend}" (bucket {bucket!r}): not checked yet.',
        "make sure workers and web processes have credentials to read and write that bucket.",
    )


def _check_directory(path: str) -> Check:
    hint = (
        "create the directory, writable by the worker's user, on every machine that runs "
        "workers or reads results (a shared volume), or fix "
        'DJANGO_RAY["RESULT_STORAGE_FILESYSTEM_PATH"].'
    )
    if not os.path.isdir(path):
        return Check("storage", Level.FAIL, f"{path} is not a directory.", hint)
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".django-ray-doctor-"):
            pass
    except OSError as error:
        return Check("storage", Level.FAIL, f"cannot write in {path}: {error}", hint)
    return Check("storage", Level.OK, f"{path} is a writable directory.")


def render_checks(checks: list[Check]) -> str:
    """One line per check (continuation lines and the hint indented under it), then a tally."""
    lines = []
    for check in checks:
        first, *rest = check.detail.split("\n")
        lines.append(f"{check.level.value:<4}  {check.name:<10}  {first}")
        lines += [f"{'':18}{line}" for line in rest]
        if check.hint:
            lines.append(f"{'':18}hint: {check.hint}")
    tally = {level: sum(check.level is level for check in checks) for level in Level}
    lines.append(
        f"{len(checks)} checks: {tally[Level.OK]} OK, {tally[Level.WARN]} WARN, "
        f"{tally[Level.FAIL]} FAIL."
    )
    return "\n".join(lines)


def _host_port(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
