"""A headless Chromium driven through Selenium, for tests that use the admin as a person does.

Debian's ``chromium`` and ``chromium-driver`` packages provide the browser and
its driver; nothing is downloaded at run time (the driver's path is given, so
Selenium Manager never runs). Without them the tests skip, naming the
packages; under CI=true they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)
SCREENSHOTS_ENV = "DJANGO_RAY_SCREENSHOTS"


def missing(message: str) -> None:
    """Fail under CI=true, where every service must be there; skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[object]:
    """A fresh headless Chromium window of :data:`WINDOW` pixels, closed after the test."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if absent:
        missing(
            f"{' and '.join(absent)} not found: install Debian's chromium and chromium-driver "
            "packages (apt-get install -y chromium chromium-driver)."
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the test saves its screenshots: $DJANGO_RAY_SCREENSHOTS, else a temporary folder."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
