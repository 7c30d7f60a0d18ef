import pytest
from django.tasks import Task

from django_ray.registry import UnregisteredTask, resolve_task


def test_a_declared_task_resolves():
    task = resolve_task("tests.testapp.tasks.add")

    assert isinstance(task, Task)
    assert task.module_path == "tests.testapp.tasks.add"


def test_a_plain_function_is_refused():
    with pytest.raises(UnregisteredTask) as caught:
        resolve_task("os.system")

    assert str(caught.value) == (
        "os.system is a builtins.builtin_function_or_method, not a Django Task; "
        "only functions decorated with @task run on django-ray."
    )


def test_an_alias_of_a_plain_function_is_refused():
    with pytest.raises(UnregisteredTask, match="not a Django Task"):
        resolve_task("tests.testapp.tasks.not_a_task")


def test_a_missing_module_is_refused():
    with pytest.raises(UnregisteredTask, match=r"^Task nowhere\.task cannot be imported"):
        resolve_task("nowhere.task")


@pytest.mark.parametrize("path", ["", "add", "os.system; rm", "../etc.passwd", "a..b"])
def test_malformed_paths_are_refused_before_any_import(path):
    with pytest.raises(UnregisteredTask) as caught:
        resolve_task(path)

    assert str(caught.value) == f"{path!r} is not a dotted path to a task."
