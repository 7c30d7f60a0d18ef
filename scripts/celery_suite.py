"""Celery's own integration tests under the prefork pool and then under django_ray.

Runs ``t/integration/test_tasks.py`` and ``t/integration/test_inspect.py`` from the Celery
sdist, unchanged, twice against one Redis database of their own: first with the worker pool
``prefork``, then with ``django_ray``. Only the ``celery_worker_pool`` fixture differs, set by
``scripts/celery_suite_plugin.py``. Prints the counts side by side and every test whose outcome
differs, and writes them as JSON to ``benchmarks/results/celery-suite.json``.

Exit status 0 when every test that passes under prefork also passes under django_ray.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
CELERY_VERSION = "5.7.0"
SDIST_CACHE = ROOT / ".cache" / "celery-sdist"
RESULTS = ROOT / "benchmarks" / "results"
RESULT_JSON = RESULTS / "celery-suite.json"

TEST_FILES = ("t/integration/test_tasks.py", "t/integration/test_inspect.py")
# Upstream files the run reads; checked byte for byte against the tarball afterwards.
UPSTREAM_FILES = (*TEST_FILES, "t/integration/conftest.py", "t/integration/tasks.py")
POOLS = ("prefork", "django_ray")
POOL_FALLBACKS = {"django_ray": "celery_bridge.pool:RayPool"}
PLUGIN = "celery_suite_plugin"

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 11
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"

RUN_MARKER_ENV = "CELERY_SUITE_RUN"
# Dropped from the tests' environment: they would point the worker at something else.
DROPPED_ENV = (
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_RAY_CELERY_APP",
    "RAY_ADDRESS",
    "NO_WORKER",
    "PYTEST_ADDOPTS",
)
INTERRUPT_GRACE_S = 60
SETTLE_S = 15
TERM_GRACE_S = 10

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


# --- the sdist ------------------------------------------------------------------------------


def fetch_sdist() -> Path:
    """The Celery sdist tarball, downloaded into the cache unless it is already there."""
    tarball = SDIST_CACHE / f"celery-{CELERY_VERSION}.tar.gz"
    if tarball.is_file():
        return tarball
    SDIST_CACHE.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*pip, f"celery=={CELERY_VERSION}", "-d", str(SDIST_CACHE)], check=True)
    if not tarball.is_file():
        raise SystemExit(f"pip download did not leave {tarball}")
    return tarball


def unpack(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    return into / f"celery-{CELERY_VERSION}"


def modified_upstream_files(tarball: Path, tree: Path) -> list[str]:
    """Upstream files whose bytes in the tree differ from the tarball's."""
    prefix = f"celery-{CELERY_VERSION}/"
    modified = []
    with tarfile.open(tarball) as archive:
        for name in UPSTREAM_FILES:
            member = archive.extractfile(prefix + name)
            original = member.read() if member else b""
            if digest(original) != digest((tree / name).read_bytes()):
                modified.append(name)
    return modified


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- one pool's run -------------------------------------------------------------------------


def flush_redis() -> None:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=10)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        raise SystemExit(f"Redis is not answering on {REDIS_HOST}:{REDIS_PORT}: {exc}") from exc
    finally:
        client.close()


def pytest_command(junit: Path, test_timeout: int, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "pytest", *TEST_FILES]
    command += ["-p", "celery.contrib.pytest", "-p", PLUGIN]
    command += ["-p", "no:cacheprovider", "-p", "no:django"]
    command += [f"--junit-xml={junit}", "-o", "junit_family=xunit1", "-v", "-rfEs"]
    if importlib.util.find_spec("pytest_timeout"):
        command.append(f"--timeout={test_timeout}")
    return [*command, *extra]


def child_env(pool: str, tree: Path, scratch: Path, marker: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in DROPPED_ENV}
    ray_tmp = scratch / "ray"
    ray_tmp.mkdir(exist_ok=True)
    env.update(
        TEST_BROKER=REDIS_URL,
        TEST_BACKEND=REDIS_URL,
        REDIS_HOST=REDIS_HOST,
        REDIS_PORT=str(REDIS_PORT),
        # The tree first, so Ray's workers import the same t.integration.tasks.
        PYTHONPATH=os.pathsep.join([str(tree), str(SCRIPTS)]),
        PYTHONDONTWRITEBYTECODE="1",
        # The embedded worker logs at "error" unless told otherwise, and
        # test_trace_log_arguments reads the worker's INFO records.
        WORKER_LOGLEVEL="INFO",
        RAY_TMPDIR=str(ray_tmp),
        CELERY_SUITE_POOL=pool,
        CELERY_SUITE_POOL_FALLBACK=POOL_FALLBACKS.get(pool, ""),
        CELERY_SUITE_PROBE=str(scratch / "probe.json"),
        CELERY_SUITE_CURRENT=str(scratch / "current-test"),
        **{RUN_MARKER_ENV: marker},
    )
    return env


def run_bounded(
    command: list[str], env: Mapping[str, str], cwd: Path, log: Path, timeout: float
) -> tuple[int, bool, float]:
    """Run to the end or to ``timeout``: (exit status, whether it timed out, seconds).

    On time-out pytest gets SIGINT first, so it still writes its junit XML; its process
    group is killed if it has not finished ``INTERRUPT_GRACE_S`` later.
    """
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return process.wait(timeout), False, time.monotonic() - started
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, True, time.monotonic() - started


def run_pool(pool: str, tree: Path, scratch: Path, args: argparse.Namespace) -> PoolRun:
    flush_redis()
    scratch.mkdir()
    marker = f"{uuid.uuid4().hex}-{pool}"
    junit = RESULTS / f"celery-suite-{pool}.xml"
    log = RESULTS / f"celery-suite-{pool}.log"
    junit.unlink(missing_ok=True)
    print(f"== {pool}: log in {log.relative_to(ROOT)} ==", flush=True)
    command = pytest_command(junit, args.test_timeout, args.pytest_args)
    env = child_env(pool, tree, scratch, marker)
    returncode, timed_out, seconds = run_bounded(command, env, tree, log, args.run_timeout)
    outcomes = parse_junit(junit, pool)
    if timed_out:
        mark_interrupted(outcomes, scratch / "current-test", pool, args.run_timeout)
    return PoolRun(
        pool=pool,
        seconds=round(seconds, 1),
        returncode=returncode,
        timed_out=timed_out,
        outcomes=outcomes,
        probe=read_probe(scratch / "probe.json"),
        stragglers=reap(marker),
        junit=str(junit.relative_to(ROOT)),
        log=str(log.relative_to(ROOT)),
    )


def mark_interrupted(
    outcomes: dict[str, Outcome], current: Path, pool: str, timeout: float
) -> None:
    """The test a timed-out run was stopped in errs, whatever its subtests reported."""
    if current.is_file():
        test_id = strip_pool_id(current.read_text().strip(), pool)
        outcomes[test_id] = Outcome(ERROR, f"interrupted: the run exceeded {timeout:.0f}s")


def read_probe(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    data: dict[str, str] = json.loads(path.read_text())
    return data


# --- stragglers -----------------------------------------------------------------------------


def marked_processes(marker: str) -> dict[int, str]:
    """Processes (pid: command) whose environment carries this run's marker."""
    needle = f"{RUN_MARKER_ENV}={marker}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "comm").read_text().strip()
    return found


def reap(marker: str) -> list[str]:
    """Kill what is left of a run's processes (Ray's among them); say which they were.

    Ray's agents and idle workers exit by themselves shortly after their raylet; only what
    is still there ``SETTLE_S`` after pytest exited counts as left over.
    """
    wait_gone(marker, SETTLE_S)
    left = marked_processes(marker)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked_processes(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if wait_gone(marker, TERM_GRACE_S):
            break
    return [f"{pid} {name}" for pid, name in sorted(left.items())]


def wait_gone(marker: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while marked_processes(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


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


def override_problem(run: PoolRun) -> str:
    """Why the run cannot be trusted to have used its pool ("" when it did)."""
    expected = {run.pool, POOL_FALLBACKS.get(run.pool)}
    given = run.probe.get("worker_was_given")
    if given is None:
        return "the session worker was never set up" if run.outcomes else "no results"
    if given not in expected:
        return f"the session worker was given pool {given!r}"
    return ""


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


def write_json(runs: list[PoolRun], diffs: list[Difference], extra: Mapping[str, object]) -> None:
    data = {
        "benchmark": "celery-suite",
        "measured_at": time.time(),
        "celery": CELERY_VERSION,
        "tests": list(TEST_FILES),
        "redis": REDIS_URL,
        **extra,
        "runs": {
            run.pool: {**asdict(run), "counts": run.counts(), "outcomes": outcomes_json(run)}
            for run in runs
        },
        "differ": [asdict(diff) for diff in diffs],
    }
    RESULT_JSON.write_text(json.dumps(data, indent=2))


def outcomes_json(run: PoolRun) -> dict[str, dict[str, str]]:
    return {test: asdict(outcome) for test, outcome in sorted(run.outcomes.items())}


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Celery's integration tests: prefork vs django_ray."
    )
    parser.add_argument(
        "--run-timeout", type=float, default=1800, help="seconds for one pool's whole run"
    )
    parser.add_argument("--test-timeout", type=int, default=180, help="seconds for one test")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="celery-suite-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tarball = fetch_sdist()
    with scratch_dir() as scratch:
        tree = unpack(tarball, scratch / "sdist")
        runs = [run_pool(pool, tree, scratch / pool, args) for pool in POOLS]
        modified = modified_upstream_files(tarball, tree)
    return report(runs, modified)


def report(runs: list[PoolRun], modified: list[str]) -> int:
    """Print and write the comparison; the exit status."""
    base, other = runs
    diffs = differences(base, other)
    problems = {run.pool: override_problem(run) for run in runs}
    lost = regressions(base, other)
    print()
    print_table(runs)
    for run in runs:
        print_run_notes(run, problems[run.pool])
    if modified:
        print(f"upstream files modified during the run: {modified}")
    print_differences(diffs)
    extra = {
        "modified_upstream_files": modified,
        "override_problems": problems,
        "regressions": lost,
    }
    write_json(runs, diffs, extra)
    print(f"results: {RESULT_JSON.relative_to(ROOT)}")
    trusted = bool(base.outcomes) and not modified and not any(problems.values())
    return 0 if trusted and not lost else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
