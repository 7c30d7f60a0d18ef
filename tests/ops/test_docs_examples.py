"""The settings contract's four example configurations, as configuration.md shows them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from django_ray.conf import RaySettings
from django_ray.retry import RetryPolicy
from tests.ops.test_docs import DOCS, section

# The contract's examples, written out as the contract has them.
CONTRACT_EXAMPLES = {
    "Basic": {"RAY_ADDRESS": "auto", "DEFAULT_CONCURRENCY": 10, "MAX_TASK_ATTEMPTS": 3},
    "Development": {
        "RAY_ADDRESS": "auto",
        "DEFAULT_CONCURRENCY": 5,
        "MAX_TASK_ATTEMPTS": 1,
        "STUCK_TASK_TIMEOUT_SECONDS": 60,
    },
    "Production": {
        "RAY_ADDRESS": "ray://ray-head-svc:10001",
        "DEFAULT_CONCURRENCY": 50,
        "MAX_TASK_ATTEMPTS": 3,
        "RETRY_BACKOFF_SECONDS": 120,
        "STUCK_TASK_TIMEOUT_SECONDS": 600,
        "WORKER_LEASE_SECONDS": 120,
        "WORKER_HEARTBEAT_SECONDS": 30,
    },
    "High-Throughput": {
        "RAY_ADDRESS": "ray://ray-head-svc:10001",
        "DEFAULT_CONCURRENCY": 100,
        "MAX_TASK_ATTEMPTS": 5,
        "RETRY_BACKOFF_SECONDS": 30,
    },
}
PYTHON_BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.S)


def examples() -> dict[str, list[dict]]:
    """Heading -> the DJANGO_RAY dict of every Python block under it."""
    text = section((DOCS / "configuration.md").read_text(), "Example configurations")
    found = {}
    for part in re.split(r"^### ", text, flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        found[heading] = [run_block(block["code"]) for block in PYTHON_BLOCK.finditer(body)]
    return found


def run_block(code: str) -> dict:
    namespace: dict = {}
    exec(code, namespace)
    return namespace["DJANGO_RAY"]


def test_the_four_examples_are_shown_in_the_contracts_order():
    assert list(examples()) == list(CONTRACT_EXAMPLES)


@pytest.mark.parametrize("name", CONTRACT_EXAMPLES)
def test_each_example_is_the_contracts_and_validates(name):
    first, *others = examples()[name]

    assert first == CONTRACT_EXAMPLES[name]
    for mapping in (first, *others):
        RaySettings.from_mapping(mapping)  # raises DjangoRaySettingsError if invalid


def test_the_behaviour_explained_beside_the_examples():
    basic, development, production, throughput = (
        RaySettings.from_mapping(examples()[name][0]) for name in CONTRACT_EXAMPLES
    )
    embedded = RaySettings.from_mapping(examples()["Development"][1])

    # "auto" joins a running cluster (ray start --head first); none starts one in-process.
    assert (basic.ray_address_kind, development.ray_address_kind) == ("auto", "auto")
    assert (embedded.ray_address_kind, embedded.runner) == ("local", "ray_core")
    assert {production.ray_address_kind, throughput.ray_address_kind} == {"client"}
    assert {s.runner for s in (basic, development, production, throughput)} == {"ray_job"}
    assert production.result_storage_backend == "digest"
    assert delays(production) == [timedelta(seconds=120), timedelta(seconds=240)]
    assert delays(throughput) == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert RetryPolicy.for_task(development, {}).max_attempts == 1


def delays(settings: RaySettings) -> list[timedelta]:
    policy = RetryPolicy.for_task(settings, {})
    return [policy.delay_after(attempt) for attempt in range(1, policy.max_attempts)]
