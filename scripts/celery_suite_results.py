"""What the Celery suite's runs gave: outcomes read from JUnit XML, the differences
between pools, and the tables printed of them (see ``celery_suite.py``)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

PASSED, FAILED, SKIPPED, ERROR, MISSING = "passed", "failed", "skipped", "error", "missing"
STATUSES = (PASSED, FAILED, SKIPPED, ERROR)


@dataclass(frozen=True)
class Outcome:
    status: str
    message: str = ""


@dataclass
class PoolRun:
    pool: str
    seconds: float
    returncode: int
    timed_out: bool
    outcomes: dict[str, Outcome]
    probe: dict[str, str]
    stragglers: list[str] = field(default_factory=list)
    junit: str = ""
    log: str = ""

    def counts(self) -> dict[str, int]:
        tally = Counter(outcome.status for outcome in self.outcomes.values())
        return {status: tally[status] for status in STATUSES}


@dataclass(frozen=True)
class Difference:
    test_id: str
    outcomes: dict[str, str]
    message: str


# --- results --------------------------------------------------------------------------------


def parse_junit(path: Path, pool: str) -> dict[str, Outcome]:
    """Per-test outcomes from pytest's junit XML (family xunit1), keyed by pytest node id."""
    if not path.is_file():
        return {}
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = node_id(case, pool)
        outcome = case_outcome(case)
        previous = outcomes.get(test_id)
        # A test failing in its call and again in teardown is reported twice.
        if previous is None or rank(outcome) > rank(previous):
            outcomes[test_id] = outcome
    return outcomes


def node_id(case: ET.Element, pool: str) -> str:
    """``file::Class::name``, without the pool id the plugin's parametrization added."""
    file = case.get("file", "")
    module = file.removesuffix(".py").replace("/", ".")
    classes = case.get("classname", "").removeprefix(module).strip(".")
    name = strip_pool_id(case.get("name", ""), pool)
    return "::".join(part for part in (file, *classes.split("."), name) if part)


def strip_pool_id(name: str, pool: str) -> str:
    name = re.sub(rf"\[{re.escape(pool)}\]$", "", name)
    return re.sub(rf"-{re.escape(pool)}\]$", "]", name)


def case_outcome(case: ET.Element) -> Outcome:
    for tag, status in (("failure", FAILED), ("error", ERROR), ("skipped", SKIPPED)):
        element = case.find(tag)
        if element is not None:
            return Outcome(status, first_line(element.get("message") or element.text or ""))
    return Outcome(PASSED)


def rank(outcome: Outcome) -> int:
    return (PASSED, SKIPPED, ERROR, FAILED).index(outcome.status)


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def differences(base: PoolRun, other: PoolRun) -> list[Difference]:
    diffs = []
    for test_id in sorted(base.outcomes.keys() | other.outcomes.keys()):
        a = base.outcomes.get(test_id, Outcome(MISSING))
        b = other.outcomes.get(test_id, Outcome(MISSING))
        if a.status != b.status:
            message = b.message if b.status != PASSED else a.message
            statuses = {base.pool: a.status, other.pool: b.status}
            diffs.append(Difference(test_id, statuses, message))
    return diffs


def regressions(base: PoolRun, other: PoolRun) -> list[str]:
    """Tests that pass under ``base`` and do not under ``other``."""
    passed = [test for test, outcome in base.outcomes.items() if outcome.status == PASSED]
    return sorted(t for t in passed if other.outcomes.get(t, Outcome(MISSING)).status != PASSED)


# --- output ---------------------------------------------------------------------------------


def print_table(runs: list[PoolRun]) -> None:
    header = ("pool", *STATUSES, "seconds")
    rows = [header] + [
        (run.pool, *map(str, run.counts().values()), f"{run.seconds:.1f}") for run in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def print_run_notes(run: PoolRun, problem: str) -> None:
    status = "timed out (interrupted)" if run.timed_out else f"exit {run.returncode}"
    pool_class = run.probe.get("pool_class") or run.probe.get("error", "no worker")
    print(f"{run.pool}: pytest {status}; worker pool: {pool_class}")
    if problem:
        print(f"{run.pool}: override not verified: {problem}")
    if run.stragglers:
        print(f"{run.pool}: killed {len(run.stragglers)} leftover processes: {run.stragglers}")


def print_differences(diffs: list[Difference]) -> None:
    print(f"differ: {len(diffs)}")
    for diff in diffs:
        statuses = " ".join(f"{pool}={status}" for pool, status in diff.outcomes.items())
        suffix = f" ({diff.message})" if diff.message else ""
        print(f"  {diff.test_id}: {statuses}{suffix}")


def outcomes_json(run: PoolRun) -> dict[str, dict[str, str]]:
    return {test: asdict(outcome) for test, outcome in sorted(run.outcomes.items())}


# --- main -----------------------------------------------------------------------------------
