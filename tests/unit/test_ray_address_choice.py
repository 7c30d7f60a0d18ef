"""Which Ray address a worker uses: --address, then the setting, then RAY_ADDRESS, then embedded."""

import logging

import pytest

from django_ray.addresses import SETTING, ChosenAddress, choose_ray_address
from django_ray.runtime import connection

ENV = "the RAY_ADDRESS environment variable"


def choose(given=None, configured=None, **environ):
    return choose_ray_address([("--address", given), (SETTING, configured)], environ)


def test_the_option_wins_over_the_setting_and_the_environment():
    chosen = choose("ray://a:10001", "b:6379", RAY_ADDRESS="c:6379")

    assert chosen == ChosenAddress("ray://a:10001", "--address", ())
    assert chosen.describe() == "Ray address ray://a:10001, from --address"


def test_the_setting_wins_over_the_environment():
    chosen = choose(None, "auto", RAY_ADDRESS="c:6379")

    assert chosen == ChosenAddress("auto", SETTING, ("--address",))
    assert chosen.describe() == 'Ray address auto, from DJANGO_RAY["RAY_ADDRESS"]'


def test_with_nothing_configured_the_environment_is_used_as_ray_init_would():
    chosen = choose(RAY_ADDRESS=" 10.0.0.5:6379 ")

    assert chosen == ChosenAddress("10.0.0.5:6379", ENV, ("--address", SETTING))
    assert chosen.describe() == (
        "Ray address 10.0.0.5:6379, from the RAY_ADDRESS environment variable "
        '(--address and DJANGO_RAY["RAY_ADDRESS"] are unset)'
    )


@pytest.mark.parametrize("environ", [{}, {"RAY_ADDRESS": ""}, {"RAY_ADDRESS": "  "}])
def test_with_no_address_anywhere_ray_is_embedded(environ):
    chosen = choose(**environ)

    assert chosen == ChosenAddress(None, None, ("--address", SETTING, ENV))
    assert chosen.describe() == (
        'Ray address unset (no --address, DJANGO_RAY["RAY_ADDRESS"] or the RAY_ADDRESS '
        "environment variable): starting an embedded Ray in this process"
    )


def test_the_environments_local_asks_for_an_embedded_ray():
    chosen = choose(RAY_ADDRESS="local")

    assert chosen.address is None
    assert chosen.describe() == (
        "Ray address local (embedded), from the RAY_ADDRESS environment variable "
        '(--address and DJANGO_RAY["RAY_ADDRESS"] are unset)'
    )


def test_an_environment_value_that_is_no_address_is_refused_naming_both():
    with pytest.raises(ValueError) as caught:
        choose_ray_address([(SETTING, None)], {"RAY_ADDRESS": "head"})

    assert str(caught.value) == (
        "the RAY_ADDRESS environment variable is 'head', which is not a Ray address (it is "
        'read because DJANGO_RAY["RAY_ADDRESS"] is unset); set it to "auto", "host:port", '
        '"ray://host:port" or "http(s)://host:port" (port 1-65535), or unset it.'
    )


def test_an_invalid_environment_value_is_ignored_when_an_address_is_configured():
    assert choose(None, "auto", RAY_ADDRESS="head").address == "auto"


def test_the_choice_is_logged_with_where_it_came_from(monkeypatch, caplog):
    monkeypatch.setenv("RAY_ADDRESS", "ray://ray-head:10001")
    caplog.set_level(logging.INFO, logger="django_ray.runtime")

    address = connection.choose_address((SETTING, None))

    assert address == "ray://ray-head:10001"
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "django_ray.runtime",
            "INFO",
            "Ray address ray://ray-head:10001, from the RAY_ADDRESS environment variable "
            '(DJANGO_RAY["RAY_ADDRESS"] is unset)',
        )
    ]
