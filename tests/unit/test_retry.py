from datetime import UTC, datetime, timedelta

import pytest

from django_ray.retry import GiveUp, Retry, RetryPolicy, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VALUE_ERROR = {
    "exception_class_path": "builtins.ValueError",
    "exception_bases": ["builtins.Exception", "builtins.BaseException"],
}


def policy(**overrides):
    return RetryPolicy(**{"max_attempts": 5, "backoff_seconds": 60, **overrides})


@pytest.mark.parametrize(
    ("failed_attempt", "wait_seconds"), [(1, 60), (2, 120), (3, 240), (4, 480)]
)
def test_attempt_n_plus_one_waits_base_times_two_to_the_n_minus_one(failed_attempt, wait_seconds):
    assert decide(failed_attempt, VALUE_ERROR, policy(), NOW) == Retry(
        at=NOW + timedelta(seconds=wait_seconds)
    )


def test_zero_backoff_retries_at_once():
    assert decide(1, VALUE_ERROR, policy(backoff_seconds=0), NOW) == Retry(at=NOW)


def test_the_last_attempt_gives_up():
    assert decide(5, VALUE_ERROR, policy(), NOW) == GiveUp("attempt 5 of 5")


def test_a_single_attempt_policy_never_retries():
    assert decide(1, VALUE_ERROR, policy(max_attempts=1), NOW) == GiveUp("attempt 1 of 1")


def test_the_denylist_matches_the_class_by_name():
    denied = policy(denylist=frozenset({"builtins.ValueError"}))

    assert decide(1, VALUE_ERROR, denied, NOW) == GiveUp(
        "builtins.ValueError is in RETRY_EXCEPTION_DENYLIST"
    )


def test_the_denylist_matches_a_base_class_by_name():
    denied = policy(denylist=frozenset({"builtins.Exception"}))

    assert decide(1, VALUE_ERROR, denied, NOW) == GiveUp(
        "builtins.Exception is in RETRY_EXCEPTION_DENYLIST"
    )


def test_a_class_that_cannot_be_imported_is_still_matched():
    error = {"exception_class_path": "gone.module.Error", "exception_bases": []}
    denied = policy(denylist=frozenset({"gone.module.Error"}))

    assert isinstance(decide(1, error, denied, NOW), GiveUp)


@pytest.mark.parametrize(
    "path",
    [
        "django_ray.cancel.TaskCancelled",
        "django_ray.registry.UnregisteredTask",
        "django_ray.payloads.PayloadError",
    ],
)
def test_some_errors_are_never_retried(path):
    assert decide(1, {"exception_class_path": path}, policy(), NOW) == GiveUp(
        f"{path} is never retried"
    )


def test_task_options_override_the_settings():
    class Settings:
        max_task_attempts = 3
        retry_backoff_seconds = 60
        retry_exception_denylist = ("a.B",)

    assert RetryPolicy.for_task(Settings, {"max_attempts": 7, "retry_backoff_seconds": 0}) == (
        RetryPolicy(max_attempts=7, backoff_seconds=0, denylist=frozenset({"a.B"}))
    )
    assert RetryPolicy.for_task(Settings, {}) == RetryPolicy(
        max_attempts=3, backoff_seconds=60, denylist=frozenset({"a.B"})
    )


@pytest.mark.parametrize("failed_attempt", [10, 33, 99, 10**6])
def test_the_delay_is_capped_at_six_hours_and_never_overflows(failed_attempt):
    big = policy(max_attempts=10**7)

    assert decide(failed_attempt, VALUE_ERROR, big, NOW) == Retry(at=NOW + timedelta(hours=6))


def test_a_base_longer_than_the_cap_is_kept_as_it_is():
    slow = policy(backoff_seconds=86_400)

    assert decide(3, VALUE_ERROR, slow, NOW) == Retry(at=NOW + timedelta(days=1))


def test_a_timeout_is_retried_by_the_policy_and_the_denylist_can_name_it():
    from django_ray.runtime.job import Job, timeout_error

    job = Job(
        execution_id="e", attempt=1, task_path="app.tasks.slow", args=[], kwargs={}, timeout=5
    )
    error = timeout_error(job)
    assert error["message"] == (
        "app.tasks.slow ran past its time limit of 5 s (attempt 1) and was stopped on Ray"
    )
    assert decide(1, error, policy(backoff_seconds=0), NOW) == Retry(at=NOW)
    for denied in ("django_ray.exceptions.TaskTimeout", "builtins.TimeoutError"):
        assert decide(1, error, policy(denylist=frozenset({denied})), NOW) == GiveUp(
            f"{denied} is in RETRY_EXCEPTION_DENYLIST"
        )
