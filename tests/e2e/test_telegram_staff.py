"""Staff commands in Telegram: /announce previews a draft, another staff member's /approve
shows it with Send and Cancel (the second-approval rule holds here as in the console);
/stats."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.config import Config, Staff
from bot.infra.settings import Settings
from bot.shell import broadcast
from models import Announcement, AuditEntry, Delivery
from tests.e2e.telegram_chat import JSON, TelegramUser, buttons, plain
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.e2e

STAFF_ID = 424242
RAJ_ID = 434343


@pytest.fixture
def staff_app(telegram_settings: Settings, config: Config,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    from webhooks import create_app

    app = create_app(telegram_settings)
    runtime = app.extensions["petitionbot"]
    staffed = dataclasses.replace(runtime.config, staff=Staff(telegram_ids=(STAFF_ID, RAJ_ID)))
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


def send_button(message: JSON) -> str:
    """The callback data of a message's Send button."""
    return next(data for label, data in buttons(message) if label == "Send")


def test_sara_announces_from_telegram_and_raj_sends_it(
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
    with sessions() as session:
        draft = session.scalars(select(Announcement)).one()
    assert (draft.status, draft.created_by) == ("draft", f"telegram:{STAFF_ID}")
    # Sara wrote it: she may cancel it but not send it; the preview says who can.
    assert [label for label, _ in buttons(preview[0])] == ["Cancel"]
    assert f"another staff member must approve it: they send /approve {draft.id}" in text

    raj = TelegramUser(staff_client, fake_telegram, RAJ_ID, "Raj")
    shown = raj.sends(f"/approve {draft.id}")
    assert len(shown) == 1 and "PLANETS: NHS England will meet us on Monday." in plain(
        shown[0])
    assert [label for label, _ in buttons(shown[0])] == ["Send", "Cancel"]
    send = send_button(shown[0])
    queued = raj.chooses(send)
    assert f"Announcement {draft.id} queued for 1 recipient" in queued
    with sessions() as session:
        found = session.get_one(Announcement, draft.id)
        assert (found.status, found.approved_by) == ("sending", f"telegram:{RAJ_ID}")
        assert session.scalars(select(Delivery.status)).all() == ["pending"]
        actions = session.scalars(select(AuditEntry.action)).all()
    assert actions == ["announcement.create", "announcement.approve"]
    stats = sara.says("/stats")
    assert "49,258 signatures (1 here)" in stats and f"#{draft.id} sending: pending 1" in stats
    # A replayed press changes nothing.
    raj._post(fake_telegram.user_presses(RAJ_ID, send, raj.message_with_button(send)[
        "message_id"], queue=False))
    with sessions() as session:
        assert len(session.scalars(select(Delivery)).all()) == 1


def test_the_author_of_a_draft_cannot_send_it_from_telegram_alone(
        staff_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    subscribe(staff_client, fake_telegram, 5001, "Tom Jones")
    sara = TelegramUser(staff_client, fake_telegram, STAFF_ID, "Sara")
    sara.sends("/announce Free SIRT for everyone, no need to sign!")
    with sessions() as session:
        draft = session.scalars(select(Announcement)).one()
    # Neither the button data typed in (as an old Send button would send it) nor /approve.
    refused = sara.says(f"ANNOUNCE_SEND_{draft.id}")
    assert "You wrote this announcement, so another staff member must approve it" in (
        refused[:1].upper() + refused[1:])
    assert "another staff member must approve it: they send /approve" in sara.says(
        f"/approve {draft.id}")
    with sessions() as session:
        assert session.get_one(Announcement, draft.id).status == "draft"
        assert session.scalars(select(Delivery)).all() == []
        assert session.scalars(select(AuditEntry.action)).all() == ["announcement.create"]


def test_a_draft_changed_after_its_preview_is_not_sent_unseen(
        staff_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    sara = TelegramUser(staff_client, fake_telegram, STAFF_ID, "Sara")
    sara.sends("/announce We meet NHS England on Monday.")
    with sessions() as session:
        draft = session.scalars(select(Announcement)).one()
    raj = TelegramUser(staff_client, fake_telegram, RAJ_ID, "Raj")
    send = send_button(raj.sends(f"/approve {draft.id}")[0])
    with sessions.begin() as session:  # Sara changes it meanwhile, as the console's Edit does
        found = session.get_one(Announcement, draft.id)
        broadcast.edit(session, found, "Something else entirely.", broadcast.Audience(),
                       f"telegram:{STAFF_ID}")
    assert "has changed since you saw it" in raj.chooses(send)
    with sessions() as session:
        assert session.get_one(Announcement, draft.id).status == "draft"


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
