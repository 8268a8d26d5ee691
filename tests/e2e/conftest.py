"""End-to-end fixtures: a fake Telegram Bot API on loopback, and the web app pointed at it;
for the browser tests, Debian's chromium and fresh pages on the module's `site`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bot.infra.settings import Settings
from tests.e2e.telegram_chat import SECRET
from tests.fakes.telegram_api import FakeTelegram

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.e2e.browser import Site


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    """A running fake api.telegram.org for the bot @planets_petition_bot."""
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def telegram_settings(settings: Settings, fake_telegram: FakeTelegram) -> Settings:
    return dataclasses.replace(settings, telegram_bot_token=fake_telegram.token,
                               telegram_api_base_url=fake_telegram.base_url,
                               telegram_webhook_secret=SECRET)


@pytest.fixture
def telegram_app(telegram_settings: Settings) -> Iterator[Flask]:
    """The app, its TelegramGateway sending to the fake over real HTTP."""
    from webhooks import create_app

    app = create_app(telegram_settings)
    app.config["TESTING"] = True
    yield app
    runtime = app.extensions["petitionbot"]
    if runtime.telegram is not None:
        runtime.telegram.close()
    runtime.engine.dispose()


@pytest.fixture
def telegram_client(telegram_app: Flask) -> FlaskClient:
    return telegram_app.test_client()


# The browser tests' fixtures import tests/e2e/browser.py when they run, not at the top here:
# importing it skips the importing module when chromium is missing, and the Telegram tests
# in this folder need no browser.

@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, for the tests of one module."""
    from tests.e2e.browser import launched

    with launched() as browser:
        yield browser


@pytest.fixture
def open_page(chromium: Browser, site: Site) -> Iterator[Callable[..., Page]]:
    """open_page(...): a page in a fresh browser profile (its own cookies) per call, on the
    module's `site` fixture; the arguments are browser.new_page's (viewport, timeout,
    permissions). Every profile is closed after the test."""
    from tests.e2e.browser import new_page

    pages: list[Page] = []

    def make(**options: Any) -> Page:
        page = new_page(chromium, site.base, **options)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.context.close()
