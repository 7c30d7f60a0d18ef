"""The admin as an operator uses it: log in, filter, read a failure, retry it, cancel a run.

The FAILED row is made by the real worker on the session's Ray cluster (two
attempts of a task that raises); the RUNNING one is claimed through the
lifecycle, as a worker claims it. Each step checks what the page shows and
saves a screenshot (see ``screenshots`` in conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from django_ray.lifecycle import attempts
from django_ray.models import TaskExecution
from tests.testapp import tasks

pytestmark = [pytest.mark.ray, pytest.mark.django_db(transaction=True)]

TASKS = "/admin/django_ray/taskexecution/"
PASSWORD = "a-browser-test-password"


def wait(driver: WebDriver, seconds: float = 10) -> WebDriverWait:
    return WebDriverWait(driver, seconds)


def follow(driver: WebDriver, element: WebElement) -> None:
    """Click something that loads a new page, and wait until it has loaded."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait(driver).until(expected_conditions.staleness_of(page))
    wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")


def text(driver: WebDriver, selector: str) -> list[str]:
    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, selector)]


def run_action(driver: WebDriver, action: str, row: TaskExecution) -> None:
    """Tick ``row`` in the list and run ``action`` on it."""
    driver.find_element(By.CSS_SELECTOR, f'input.action-select[value="{row.pk}"]').click()
    Select(driver.find_element(By.NAME, "action")).select_by_value(action)
    follow(driver, driver.find_element(By.CSS_SELECTOR, 'button[name="index"]'))


def state_of(driver: WebDriver, row: TaskExecution) -> str:
    """The state column of ``row`` in the list."""
    checkbox = driver.find_element(By.CSS_SELECTOR, f'input.action-select[value="{row.pk}"]')
    line = checkbox.find_element(By.XPATH, "./ancestor::tr")
    return line.find_element(By.CSS_SELECTOR, "td.field-status").text


def test_an_operator_reads_a_failure_retries_it_and_cancels_a_run(
    browser, live_server, admin_user, settings, ray_cluster, ray_connection, screenshots: Path
):
    settings.DJANGO_RAY = {
        **settings.DJANGO_RAY,
        "MAX_TASK_ATTEMPTS": 2,
        "RETRY_BACKOFF_SECONDS": 0,
    }
    settings.RAY_DASHBOARD_URL = ray_cluster.dashboard_url
    admin_user.set_password(PASSWORD)
    admin_user.save()
    tasks.add.enqueue(2, 3)
    failing = tasks.always_fail.enqueue("the disk is full")
    call_command("django_ray_worker", "--ray-core", "--burst", "--address", ray_cluster.address)
    failed = TaskExecution.objects.get(pk=failing.id)
    assert (failed.state, failed.attempt) == ("FAILED", 2)
    tasks.multiply.enqueue(3, 4)  # stays READY: no worker runs any more
    tasks.add.enqueue(5, 6)
    (running,) = attempts.claim(1, worker_id="w-browser", queues=["default"], runner="ray_core")

    driver = browser
    driver.get(live_server.url + TASKS)
    assert "/admin/login/" in driver.current_url  # sent to the login form first
    driver.find_element(By.ID, "id_username").send_keys(admin_user.username)
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    follow(driver, driver.find_element(By.CSS_SELECTOR, 'input[type="submit"]'))

    # The navigation sidebar folded, as on a narrow screen, to leave the list its width.
    driver.find_element(By.ID, "toggle-nav-sidebar").click()

    # The list: the task is the link, with its state, attempts and times.
    assert (
        driver.find_element(By.CSS_SELECTOR, "#content h1").text == "Select task execution to view"
    )
    assert sorted(text(driver, "th.field-task")) == [
        "tasks.add",
        "tasks.add",
        "tasks.always_fail",
        "tasks.multiply",
    ]
    assert sorted(text(driver, "td.field-status")) == ["FAILED", "READY", "RUNNING", "SUCCESSFUL"]
    assert "4 task executions" in driver.find_element(By.CSS_SELECTOR, ".paginator").text
    driver.save_screenshot(str(screenshots / "admin-list.png"))

    # Filter by state: only the failure is left.
    filters = driver.find_element(By.ID, "changelist-filter")
    follow(driver, filters.find_element(By.LINK_TEXT, "Failed"))
    assert "state__exact=FAILED" in driver.current_url
    assert text(driver, "th.field-task") == ["tasks.always_fail"]
    assert text(driver, "td.field-attempt") == ["2"]
    driver.save_screenshot(str(screenshots / "admin-filtered.png"))

    # The failure's page: both attempts, each with its worker, Ray handle and error.
    follow(driver, driver.find_element(By.CSS_SELECTOR, "th.field-task a"))
    assert driver.find_element(By.CSS_SELECTOR, "#content h1").text == "View task execution"
    failed.refresh_from_db()
    history = driver.find_elements(By.CSS_SELECTOR, "#attempts tr.attempt")
    assert [row.find_element(By.CSS_SELECTOR, "td").text for row in history] == ["1", "2"]
    handles = [error["ray_handle"] for error in failed.errors]
    (ray_node,) = {error["node"] for error in failed.errors}  # one node: the session's
    assert len(ray_node) == 56 and failed.ray_node == ray_node
    assert len(set(handles)) == 2 and all(handles)
    outcomes = ["failed, then retried", "FAILED"]
    for row, worker, handle, outcome in zip(
        history, failed.worker_ids, handles, outcomes, strict=True
    ):
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        assert cells[1] == worker
        assert cells[2] == f"{ray_node[:12]}…"  # the node each attempt said it ran on
        assert cells[3].splitlines() == [handle, "Ray dashboard"]
        assert cells[4].splitlines() == [
            "builtins.ValueError: the disk is full",
            "Traceback",
            outcome,
        ]
    link = history[0].find_element(By.LINK_TEXT, "Ray dashboard").get_attribute("href")
    assert link == f"{ray_cluster.dashboard_url}/#/jobs/{handles[0][-8:]}/tasks/{handles[0]}"
    summary = history[1].find_element(By.TAG_NAME, "summary")
    driver.execute_script("arguments[0].scrollIntoView()", history[0])
    summary.click()  # unfold the last traceback
    traceback = history[1].find_element(By.TAG_NAME, "pre").text
    assert traceback.endswith("ValueError: the disk is full")
    driver.save_screenshot(str(screenshots / "admin-failed.png"))

    # Retry it from the list: READY again, its attempts kept.
    driver.get(live_server.url + TASKS)
    run_action(driver, "retry", failed)
    assert text(driver, ".messagelist li") == ["Retried 1 task."]
    assert state_of(driver, failed) == "READY"
    assert state_of(driver, running) == "RUNNING"
    driver.save_screenshot(str(screenshots / "admin-retried.png"))

    # Cancel the RUNNING one: marked for its worker to stop.
    run_action(driver, "cancel", running)
    assert text(driver, ".messagelist li") == [
        "Cancelled 0 READY tasks; marked 1 RUNNING task for the worker to stop."
    ]
    assert state_of(driver, running) == "RUNNING (cancel requested)"
    driver.save_screenshot(str(screenshots / "admin-cancelled.png"))
    shots = ["cancelled", "failed", "filtered", "list", "retried"]
    assert all((screenshots / f"admin-{shot}.png").stat().st_size > 10_000 for shot in shots)
