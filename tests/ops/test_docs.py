"""The docs against the contract and the code: every setting with its default, every link alive."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from django_ray.conf import DEFAULTS

# The settings contract's keys and defaults, written out once, in tests/unit/test_conf.py.
from tests.unit.test_conf import ADDITIONS, CONTRACT

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# The contract's "Environment Variables" table.
CONTRACT_ENVIRONMENT = (
    "RAY_ADDRESS",
    "RAY_DASHBOARD_URL",
    "DJANGO_RAY_QUEUE",
    "DJANGO_RAY_QUEUES",
    "DJANGO_RAY_CONCURRENCY",
    "DJANGO_RAY_SKIP_VALIDATION",
)
SETTING_ROW = re.compile(r"^\| `(?P<key>[A-Z][A-Z0-9_]*)` \| [^|]+ \| (?P<default>[^|]+) \|$", re.M)
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## `` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def documented_defaults() -> dict[str, object]:
    """Key -> default, from the tables of configuration.md's Settings section.

    The default is the first literal in backquotes of its cell, e.g. `1048576` (1 MiB).
    """
    text = section((DOCS / "configuration.md").read_text(), "Settings")
    found = {}
    for row in SETTING_ROW.finditer(text):
        literal = re.search(r"`([^`]+)`", row["default"])
        assert literal, f"no default in backquotes for {row['key']}: {row['default']!r}"
        found[row["key"]] = ast.literal_eval(literal[1])
    return found


def test_every_setting_of_the_contract_is_documented_with_its_default():
    assert documented_defaults() == CONTRACT | ADDITIONS


def test_the_settings_are_documented_in_the_contracts_order():
    assert list(documented_defaults()) == list(CONTRACT) + list(ADDITIONS)


def test_the_code_defaults_are_the_documented_ones():
    assert dict(DEFAULTS) == documented_defaults()
    assert list(DEFAULTS) == list(documented_defaults())


def test_every_environment_variable_of_the_contract_is_documented():
    text = section((DOCS / "configuration.md").read_text(), "Environment variables")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, re.M))

    assert set(CONTRACT_ENVIRONMENT) <= documented


def test_the_index_links_every_page():
    linked = {match["target"] for match in LINK.finditer((DOCS / "index.md").read_text())}
    pages = {path.name for path in DOCS.glob("*.md")} - {"index.md"}

    assert pages <= linked


def test_relative_links_in_the_docs_lead_somewhere():
    broken = []
    for page in [*DOCS.glob("*.md"), ROOT / "README.md", ROOT / "sample_project" / "README.md"]:
        for match in LINK.finditer(page.read_text()):
            target = match["target"].split("#", 1)[0]
            if not target or "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {match['target']}")
    assert broken == []
