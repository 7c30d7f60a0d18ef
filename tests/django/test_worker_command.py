"""Argument handling of django_ray_worker that is settled before Ray is touched."""

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_ray_job_mode_says_it_is_not_implemented_yet():
    with pytest.raises(CommandError) as caught:
        call_command("django_ray_worker", "--ray-job", "--burst")

    assert str(caught.value) == (
        "The ray_job runner is not implemented yet; run with --ray-core "
        "(or set DJANGO_RAY['RUNNER'] = 'ray_core')."
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
