"""Staff commands in Telegram: /announce previews a draft with Send and Cancel; /stats."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Config, Staff
from bot.settings import Settings
from models import Announcement, AuditEntry, Delivery
from tests.e2e.telegram_chat import TelegramUser, plain
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.e2e

STAFF_ID = 424242


@pytest.fixture
def staff_app(telegram_settings: Settings, config: Config,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    from webhooks import create_app

    app = create_app(telegram_settings)
    runtime = app.extensions["petitionbot"]
    staffed = dataclasses.replace(runtime.config, staff=Staff(telegram_ids=(STAFF_ID,)))
    monkeypatch.setattr(runtime.service, "config", staffed)
    yield app
    if runtime.telegram is not None:
        runtime.telegram.close()
    runtime.engine.dispose()


@pytest.fixture
def staff_client(staff_app: Flask) -> FlaskClient:
    return staff_app.test_client()


def subscribe(client: FlaskClient, fake: FakeTelegram, user_id: int, name: str) -> None:
    person = TelegramUser(client, fake, user_id, name.split()[0])
    for text in ("hi", "SIGN", "YES", name, "SW1A 1AA", "YES", "YES"):
        person.sends(text)


def test_sara_announces_from_telegram_and_sends_it(
        staff_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    subscribe(staff_client, fake_telegram, 5001, "Tom Jones")
    sara = TelegramUser(staff_client, fake_telegram, STAFF_ID, "Sara")
    preview = sara.sends("/announce NHS England will meet us on Monday.")
    assert len(preview) == 1
    text = plain(preview[0])
    assert "Recipients: 1 (" in text and "telegram 1" in text
    assert "PLANETS: NHS England will meet us on Monday." in text
    assert "STOP" in text
    labels = [b["text"] for row in preview[0]["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["Send", "Cancel"]
    with sessions() as session:
        draft = session.scalars(select(Announcement)).one()
    assert (draft.status, draft.created_by) == ("draft", f"telegram:{STAFF_ID}")

    queued = sara.chooses(f"ANNOUNCE_SEND_{draft.id}")
    assert f"Announcement {draft.id} queued for 1 recipient" in queued
    with sessions() as session:
        assert session.get(Announcement, draft.id).status == "sending"
        assert session.scalars(select(Delivery.status)).all() == ["pending"]
        actions = session.scalars(select(AuditEntry.action)).all()
    assert actions == ["announcement.create", "announcement.approve"]
    stats = sara.says("/stats")
    assert "49,258 signatures (1 here)" in stats and f"#{draft.id} sending: pending 1" in stats
    # A replayed press changes nothing.
    sara._post(fake_telegram.user_presses(STAFF_ID, f"ANNOUNCE_SEND_{draft.id}",
                                          sara.message_with_button(
                                              f"ANNOUNCE_SEND_{draft.id}")["message_id"],
                                          queue=False))
    with sessions() as session:
        assert len(session.scalars(select(Delivery)).all()) == 1


def test_sara_cancels_a_draft(staff_client: FlaskClient, fake_telegram: FakeTelegram,
                              sessions: sessionmaker[Session]) -> None:
    sara = TelegramUser(staff_client, fake_telegram, STAFF_ID, "Sara")
    sara.sends("/announce Thank you all!")
    with sessions() as session:
        draft = session.scalars(select(Announcement)).one()
    assert f"Announcement {draft.id} cancelled." in sara.chooses(f"ANNOUNCE_CANCEL_{draft.id}")
    with sessions() as session:
        assert session.get(Announcement, draft.id).status == "cancelled"


def test_a_supporter_cannot_use_staff_commands(
        staff_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    mallory = TelegramUser(staff_client, fake_telegram, 6666, "Mallory")
    said = mallory.says("/announce Free money!")
    assert "Hello from PLANETS" in said  # an ordinary first message
    assert mallory.says("/stats").startswith("Sorry, I did not understand")
    with sessions() as session:
        assert session.scalars(select(Announcement)).all() == []
