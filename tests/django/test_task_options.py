"""Per-task Ray options and retry overrides: declared with @task, overridden with using()."""

import pytest
from django.tasks import task
from django.tasks.exceptions import InvalidTask

from django_ray.models import TaskExecution
from django_ray.tasks import RayTask
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def test_the_backend_declares_ray_tasks():
    assert isinstance(tasks.add, RayTask)


def test_declared_options_are_stored_on_the_row():
    tasks.fail.enqueue("x")

    assert TaskExecution.objects.get().options == {"max_attempts": 1}


def test_using_overrides_options_per_call_and_keeps_the_declaration():
    tasks.add.using(num_cpus=2, resources={"special": 1}, priority=3).enqueue(1, 2)

    row = TaskExecution.objects.get()
    assert (row.options, row.priority) == ({"num_cpus": 2, "resources": {"special": 1}}, 3)
    assert tasks.add.num_cpus is None


def test_an_unknown_option_is_refused_naming_the_valid_ones():
    with pytest.raises(InvalidTask) as caught:
        tasks.add.using(num_cpu=2)

    assert str(caught.value) == (
        "Task tests.testapp.tasks.add: unknown option(s) num_cpu; options are num_cpus, "
        "num_gpus, memory, resources, runtime_env, max_calls, max_attempts, "
        "retry_backoff_seconds, timeout."
    )


def test_invalid_option_values_are_refused_at_declaration():
    with pytest.raises(InvalidTask) as caught:
        task(num_cpus=-1, max_attempts=0, resources={"x": "many"})(_module_level_function)

    assert str(caught.value) == (
        "Task tests.django.test_task_options._module_level_function: "
        "num_cpus must be a number >= 0; got -1; max_attempts must be an integer >= 1; got 0; "
        "resources must map names to numbers >= 0; got {'x': 'many'}."
    )


def _module_level_function():
    return None


def test_max_attempts_above_the_maximum_is_refused():
    with pytest.raises(InvalidTask) as caught:
        task(max_attempts=1000)(_module_level_function)

    assert str(caught.value) == (
        "Task tests.django.test_task_options._module_level_function: "
        "max_attempts must be at most 100; got 1000."
    )


@pytest.mark.parametrize("timeout", [-1, 2.5, "60", True])
def test_a_timeout_must_be_whole_seconds(timeout):
    with pytest.raises(InvalidTask) as caught:
        tasks.add.using(timeout=timeout).enqueue(1, 2)

    assert str(caught.value) == (
        "Task tests.testapp.tasks.add: "
        f"timeout must be an integer number of seconds >= 0; got {timeout!r}."
    )


def test_a_timeout_is_stored_and_read_as_the_attempts_limit(settings):
    from django_ray.runtime.job import Job

    tasks.add.using(timeout=30).enqueue(1, 2)
    tasks.add.using(timeout=0).enqueue(1, 2)
    tasks.add.enqueue(1, 2)
    limits = {}
    settings.DJANGO_RAY = {**settings.DJANGO_RAY, "TASK_TIMEOUT_SECONDS": 90}
    for row in TaskExecution.objects.order_by("enqueued_at"):
        limits[row.options.get("timeout", "-")] = Job.of(row).timeout

    assert limits == {30: 30, 0: None, "-": 90}  # 0: no limit, whatever the default
