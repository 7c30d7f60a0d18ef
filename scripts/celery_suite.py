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
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path

from celery_suite_results import (
    ERROR,
    Difference,
    Outcome,
    PoolRun,
    differences,
    outcomes_json,
    parse_junit,
    print_differences,
    print_run_notes,
    print_table,
    regressions,
    strip_pool_id,
)

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


def override_problem(run: PoolRun) -> str:
    """Why the run cannot be trusted to have used its pool ("" when it did)."""
    expected = {run.pool, POOL_FALLBACKS.get(run.pool)}
    given = run.probe.get("worker_was_given")
    if given is None:
        return "the session worker was never set up" if run.outcomes else "no results"
    if given not in expected:
        return f"the session worker was given pool {given!r}"
    return ""


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
