"""The shape of the code, checked: one Ray core, no upward imports, no import cycles, small modules.

These read the source (nothing is imported), so they fail the moment a change
grows a second copy of the Ray core or a cycle, whatever the tests exercise.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("django_ray", "celery_bridge")
MAX_LINES = 330  # "about 300": past that, a module has two jobs


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path, *, at_import_only: bool) -> set[str]:
    """Dotted names ``path`` imports; with ``at_import_only``, only what runs at import time
    (not inside functions, nor under ``if TYPE_CHECKING``)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            body = node.orelse
        elif at_import_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return
        else:
            body = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in body:
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def internal(names: set[str], known: dict[str, Path], own: str) -> set[str]:
    """The project's modules among ``names`` (longest known prefix), without ``own``."""
    found = set()
    for name in names:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in known:
                found.add(".".join(parts[:end]))
                break
    return found - {own}


def test_nothing_in_runtime_imports_the_worker_loop():
    known = modules()
    upward = {
        name: sorted(n for n in internal(imported(path, at_import_only=False), known, name)
                     if n.startswith("django_ray.worker"))
        for name, path in known.items()
        if name.startswith("django_ray.runtime")
    }  # fmt: skip
    assert {name: found for name, found in upward.items() if found} == {}


def test_ray_remote_functions_and_actors_are_made_only_in_runtime():
    outside = [
        str(path.relative_to(ROOT))
        for name, path in modules().items()
        if not name.startswith("django_ray.runtime") and "ray.remote" in path.read_text()
    ]
    assert outside == []


def test_there_are_no_import_cycles():
    known = modules()
    graph = {
        name: internal(imported(path, at_import_only=True), known, name)
        for name, path in known.items()
    }
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"
