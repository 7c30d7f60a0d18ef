"""Optional client libraries: django-ray imports without them, and says what to install."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from django_ray.results import ResultStorageError, missing_library_problem, storage_for
from tests.results.conftest import MakeSettings

MISSING = {
    "s3": (
        "boto3",
        'is "s3", but boto3 is not installed; run: pip install boto3 (django-ray\'s "s3" extra).',
    ),
    "gcs": (
        "google.cloud.storage",
        'is "gcs", but google-cloud-storage is not installed; '
        'run: pip install google-cloud-storage (django-ray\'s "gcs" extra).',
    ),
}


@pytest.mark.parametrize("backend", ["digest", "filesystem", "s3", "gcs"])
def test_nothing_is_missing_here(backend: str):
    assert missing_library_problem(backend) is None


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_a_missing_library_names_the_pip_command(
    backend: str, monkeypatch: pytest.MonkeyPatch, make_settings: MakeSettings
):
    module, problem = MISSING[backend]
    monkeypatch.setitem(sys.modules, module, None)  # how Python spells "not importable"

    assert missing_library_problem(backend) == problem
    with pytest.raises(ResultStorageError) as raised:
        storage_for(make_settings(), backend)
    assert str(raised.value) == f'DJANGO_RAY["RESULT_STORAGE_BACKEND"] {problem}'


def test_a_missing_parent_package_counts_as_missing(monkeypatch: pytest.MonkeyPatch):
    def no_google(name: str, package: str | None = None) -> None:
        raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")

    monkeypatch.setattr(importlib.util, "find_spec", no_google)

    assert missing_library_problem("gcs") == MISSING["gcs"][1]


def test_django_ray_imports_and_works_without_either_library(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        for name in ("boto3", "botocore", "google.cloud.storage"):
            sys.modules[name] = None
        import django
        django.setup()
        import django_ray.backends, django_ray.results
        from django_ray.conf import RaySettings
        from django_ray.results import encode_result, load_result, missing_library_problem
        settings = RaySettings.from_mapping({
            "MAX_RESULT_SIZE_BYTES": 1,
            "RESULT_STORAGE_BACKEND": "filesystem",
            "RESULT_STORAGE_FILESYSTEM_PATH": sys.argv[1],
        })
        eid = "8f0c8a9e-4f39-4b7c-9d61-2f4a3c1b2a10"
        stored = encode_result([1, 2], execution_id=eid, attempt=1, settings=settings)
        print(load_result(stored.reference, execution_id=eid, settings=settings))
        print(missing_library_problem("s3"))
        print(missing_library_problem("gcs"))
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}

    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["[1, 2]", MISSING["s3"][1], MISSING["gcs"][1]]
