"""The commands the docs show, against the code: they fail the moment the docs drift.

The worker's synopsis in the README against its ``--help``; the entrypoint's variables
against configuration.md's table; every command of the README, getting-started.md and the
sample's README parsed by the program it names (management commands by their own parser,
in the sample project), run with ``--help``, or, for scripts, checked by ``bash -n``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from django.core.management.base import BaseCommand

from django_ray.management.commands.django_ray_worker import Command as WorkerCommand
from tests.ops.test_docs import DOCS, ROOT, section
from tests.ops.test_sample_project import SAMPLE, sample_env

PAGES = (ROOT / "README.md", DOCS / "getting-started.md", SAMPLE / "README.md")
CONSOLE_BLOCK = re.compile(r"```console\n(?P<lines>.*?)```", re.S)
FLAG = re.compile(r"--[a-z][a-z-]*")
# Programs of other projects, shown with what they need running; not run here.
EXTERNAL = {"curl": "needs the sample's runserver"}
# Parses each management command line given as JSON, as manage.py would, without running it.
PARSE = """
import json, sys
import django
from django.core.management import get_commands, load_command_class
django.setup()
for argv in json.loads(sys.argv[1]):
    command = load_command_class(get_commands()[argv[0]], argv[0])
    command.create_parser("manage.py", argv[0]).parse_args(argv[1:])
    print("parsed", *argv)
"""


def help_flags(command: BaseCommand, name: str) -> set[str]:
    return set(FLAG.findall(command.create_parser("manage.py", name).format_help()))


def test_the_readme_synopsis_shows_every_flag_of_the_workers_help():
    own = help_flags(WorkerCommand(), "django_ray_worker") - help_flags(BaseCommand(), "any")
    text = section((ROOT / "README.md").read_text(), "The worker")
    synopsis = CONSOLE_BLOCK.search(text)
    assert synopsis is not None

    assert set(FLAG.findall(synopsis["lines"])) == own
    assert {flag for flag in own if f"`{flag}`" not in text} == set()


def test_the_entrypoints_variables_are_the_ones_configuration_md_lists_for_it():
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", code))
    table = section((DOCS / "configuration.md").read_text(), "Environment variables")
    listed = {
        name
        for row in re.findall(r"^\| (.+?) \| (.+?) \|", table, re.M)
        if "Docker entrypoint" in row[1]
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row[0])
    }

    assert read == listed


def shown_commands(page: Path) -> list[tuple[Path, list[str]]]:
    """(working directory, argv) of every console line of ``page``; ``cd`` moves on."""
    cwd, found = ROOT, []
    for block in CONSOLE_BLOCK.finditer(page.read_text()):
        for line in block["lines"].splitlines():
            if not line.strip() or line.startswith(" ") or " [--" in line:
                continue  # continuation lines, and synopses (checked above)
            argv = shlex.split(line, comments=True)
            if argv[0] == "cd":
                cwd = cwd / argv[1]
                assert cwd.is_dir(), f"{page.name}: {line}"
            else:
                found.append((cwd, argv))
    return found


def test_every_shown_command_is_one_this_test_knows_how_to_check():
    known = {"scripts", "manage.py", "celery", "pip", *EXTERNAL}
    unknown = [
        argv for page in PAGES for _, argv in shown_commands(page) if kind(argv) not in known
    ]
    assert unknown == []


def kind(argv: list[str]) -> str:
    if argv[0].startswith("scripts/"):
        return "scripts"
    if Path(argv[0]).name.startswith("python") and argv[1:2] == ["manage.py"]:
        return "manage.py"
    return Path(argv[0]).name


def commands(of_kind: str) -> list[tuple[Path, list[str]]]:
    return [
        (cwd, argv) for page in PAGES for cwd, argv in shown_commands(page) if kind(argv) == of_kind
    ]


def test_the_shown_scripts_exist_and_parse():
    for cwd, argv in commands("scripts"):
        script = cwd / argv[0]
        assert script.is_file() and script.stat().st_mode & 0o111, argv
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0, argv


def test_in_the_sample_project_the_commands_are_the_virtual_environments():
    venv = os.path.normpath(ROOT / ".venv" / "bin")
    for cwd, argv in commands("manage.py") + commands("celery"):
        if cwd == SAMPLE:
            assert os.path.dirname(os.path.normpath(cwd / argv[0])) == venv, argv


def test_the_shown_management_commands_parse_in_the_sample_project():
    lines = [argv[2:] for _, argv in commands("manage.py")]
    done = subprocess.run(
        [sys.executable, "-c", PARSE, json.dumps(lines)],
        cwd=SAMPLE,
        env=sample_env(DJANGO_SETTINGS_MODULE="sample_project.settings"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [" ".join(["parsed", *argv]) for argv in lines]


def test_the_shown_celery_commands_run_with_help():
    celery = str(Path(sys.executable).with_name("celery"))
    for cwd, argv in commands("celery"):
        done = subprocess.run(
            [celery, *argv[1:], "--help"],
            cwd=cwd,
            env=sample_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (argv, done.stderr)


def test_the_shown_installs_name_a_source_and_known_extras():
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    for _, argv in commands("pip"):
        assert argv[:2] == ["pip", "install"], argv
        target = argv[-1]
        # Never by the bare name: on PyPI, django-ray is another project.
        assert target.startswith(".") or "/" in target, argv
        named = re.search(r"\[([a-z,-]+)\]", target)
        assert named is None or set(named[1].split(",")) <= extras, argv
