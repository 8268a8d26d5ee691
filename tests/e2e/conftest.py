"""End-to-end fixtures: a fake Telegram Bot API on loopback, and the web app pointed at it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bot.infra.settings import Settings
from tests.e2e.telegram_chat import SECRET
from tests.fakes.telegram_api import FakeTelegram


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
