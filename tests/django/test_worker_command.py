"""Argument handling of django_ray_worker that is settled before Ray is touched."""

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_ray_core_refuses_a_jobs_api_address():
    with pytest.raises(ImproperlyConfigured) as caught:
        call_command("django_ray_worker", "--ray-core", "--address", "http://127.0.0.1:8265")

    assert str(caught.value) == (
        "RAY_ADDRESS='http://127.0.0.1:8265' is a Ray Jobs API address; the ray_core runner "
        "needs a cluster address: 'auto', 'host:port' or 'ray://host:port'."
    )


@override_settings(DJANGO_RAY={"RUNNER": "ray_core"})
def test_with_the_setting_unset_the_environments_ray_address_is_used_and_logged(
    monkeypatch, caplog
):
    # A Jobs API address is one ray_core refuses before it touches Ray: the refusal shows
    # the worker took the environment's address instead of starting a private Ray.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    caplog.set_level(logging.INFO, logger="django_ray")

    with pytest.raises(ImproperlyConfigured, match=r"^RAY_ADDRESS='http://127.0.0.1:8265' is a"):
        call_command("django_ray_worker")

    assert (
        "django_ray.runtime",
        logging.INFO,
        "Ray address http://127.0.0.1:8265, from the RAY_ADDRESS environment variable "
        '(--address and DJANGO_RAY["RAY_ADDRESS"] are unset)',
    ) in caplog.record_tuples


@override_settings(DJANGO_RAY={})
def test_an_environment_ray_address_that_is_no_address_stops_the_worker(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray-head")

    with pytest.raises(CommandError, match=r"^the RAY_ADDRESS environment variable is 'ray-head'"):
        call_command("django_ray_worker", "--ray-core")


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
