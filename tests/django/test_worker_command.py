"""Argument handling of django_ray_worker that is settled before Ray is touched."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_ray_core_refuses_a_jobs_api_address():
    with pytest.raises(ImproperlyConfigured) as caught:
        call_command("django_ray_worker", "--ray-core", "--address", "http://127.0.0.1:8265")

    assert str(caught.value) == (
        "RAY_ADDRESS='http://127.0.0.1:8265' is a Ray Jobs API address; the ray_core runner "
        "needs a cluster address: 'auto', 'host:port' or 'ray://host:port'."
    )


def test_unknown_queues_are_refused_naming_the_configured_ones():
    with pytest.raises(CommandError) as caught:
        call_command("django_ray_worker", "--ray-core", "--queue", "default,nope", "--queue", "zzz")

    assert str(caught.value) == (
        "Queue(s) nope, zzz are not in TASKS['default']['QUEUES'] (default, other)."
    )


def test_concurrency_must_be_positive():
    with pytest.raises(CommandError, match=r"--concurrency must be at least 1; got -2\."):
        call_command("django_ray_worker", "--ray-core", "--concurrency", "-2")


def test_mode_flags_are_exclusive():
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("django_ray_worker", "--ray-core", "--ray-job")
