import datetime

import pytest

from django_ray.payloads import PayloadError, to_json


def test_json_values_pass_and_tuples_become_lists():
    value = {"a": [1, 2.5, (True, None)], "b": "text"}

    assert to_json(value, task_path="t.task", where="args") == {
        "a": [1, 2.5, [True, None]],
        "b": "text",
    }


def test_unserializable_value_names_task_place_and_type():
    when = datetime.datetime(2026, 1, 1)

    with pytest.raises(PayloadError) as caught:
        to_json([{"when": when}], task_path="app.tasks.send", where="args")

    assert str(caught.value) == (
        "Task app.tasks.send: args[0]['when'] is of type datetime.datetime, which is not "
        "JSON-serializable; use dict with str keys, list, tuple, str, int, float, bool or None."
    )


def test_builtin_type_is_named_without_module():
    with pytest.raises(PayloadError, match=r"the return value is of type set, which"):
        to_json({1, 2}, task_path="t.task", where="the return value")


def test_non_string_keys_are_rejected():
    with pytest.raises(PayloadError) as caught:
        to_json({1: "one"}, task_path="t.task", where="kwargs")

    assert str(caught.value) == (
        "Task t.task: kwargs has a key of type int (1); JSON object keys must be str."
    )


@pytest.mark.parametrize("number", [float("nan"), float("inf")])
def test_non_finite_floats_are_rejected(number):
    with pytest.raises(PayloadError, match="which JSON cannot represent"):
        to_json([number], task_path="t.task", where="args")


def test_payload_error_is_a_type_error():
    assert issubclass(PayloadError, TypeError)
