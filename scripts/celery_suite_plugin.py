"""pytest plugin of ``scripts/celery-suite``: Celery's own integration tests on a chosen pool.

Upstream's ``t/integration/conftest.py`` defines ``celery_worker_pool`` itself (it returns
``"prefork"``), and a conftest fixture is closer to the tests than any plugin fixture, so a
plugin fixture of that name would be shadowed. Direct parametrization overrides a fixture
whoever defines it, so this plugin parametrizes ``celery_worker_pool`` with one session-scoped
value for every test whose fixtures need it. pytest adds the pool's label to those test ids
(``test_x[django_ray]``, ``test_y[3-django_ray]``); the suite strips it when it reads the XML.
A session-scoped parameter also makes pytest regroup the tests (those without the worker move
to the end); the plugin puts them back in upstream's order.

Environment (set by ``scripts/celery_suite.py``):

``CELERY_SUITE_POOL``
    the pool's label and name, e.g. ``prefork`` or ``django_ray``.
``CELERY_SUITE_POOL_FALLBACK``
    the class path to use instead when the name is not a Celery pool alias.
``CELERY_SUITE_PROBE``
    a file where the plugin writes, as JSON, which pool the session worker was given and
    which pool class it ran, so the suite can check that the override took effect.
``CELERY_SUITE_CURRENT``
    a file holding the node id of the test running now (removed when it ends), so a run
    stopped on its time-out can name the test it was stuck in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

POOL_ENV = "CELERY_SUITE_POOL"
FALLBACK_ENV = "CELERY_SUITE_POOL_FALLBACK"
PROBE_ENV = "CELERY_SUITE_PROBE"
CURRENT_ENV = "CELERY_SUITE_CURRENT"
POOL_FIXTURE = "celery_worker_pool"
WORKER_FIXTURE = "celery_session_worker"


def pool_label() -> str:
    return os.environ[POOL_ENV]


def pool_value() -> str:
    """The pool's alias when Celery knows it, else the configured class path."""
    from celery import concurrency

    label = pool_label()
    if label in concurrency.ALIASES:
        return label
    return os.environ.get(FALLBACK_ENV) or label


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # trylast: the pool's id comes after upstream's own parameter ids.
    if POOL_FIXTURE in metafunc.fixturenames:
        metafunc.parametrize(POOL_FIXTURE, [pool_value()], scope="session", ids=[pool_label()])


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Generator[None, None, None]:
    """Keep the collection order: deselecting still applies, regrouping does not."""
    order = {id(item): index for index, item in enumerate(items)}
    yield
    items.sort(key=lambda item: order.get(id(item), len(order)))


def pytest_runtest_logstart(nodeid: str) -> None:
    if path := os.environ.get(CURRENT_ENV):
        Path(path).write_text(nodeid)


def pytest_runtest_logfinish() -> None:
    if path := os.environ.get(CURRENT_ENV):
        Path(path).unlink(missing_ok=True)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    if fixturedef.argname != WORKER_FIXTURE:
        return (yield)
    try:
        worker = yield
    except BaseException as exc:
        write_probe(request, error=first_line(exc))
        raise
    pool_cls = worker.pool_cls
    write_probe(request, pool_class=f"{pool_cls.__module__}:{pool_cls.__qualname__}")
    return worker


def write_probe(request: pytest.FixtureRequest, **facts: str) -> None:
    path = os.environ.get(PROBE_ENV)
    if not path:
        return
    probe = {
        "label": pool_label(),
        "worker_was_given": str(request.getfixturevalue(POOL_FIXTURE)),
        **facts,
    }
    Path(path).write_text(json.dumps(probe, indent=2))


def first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0]
