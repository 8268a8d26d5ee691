"""Test sends to yourself: a staff member links their own phone or Telegram by messaging
the bot a one-time code from the console, and "Send a test to me" sends a draft there,
through the same outbox as supporters' copies, to nobody else.

The bot side is driven through the shell (Service.receive), as every adapter calls it;
the console side through its pages, with its CSRF tokens, and the real Twilio webhook."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel
from bot.infra.config import Config
from bot.shell import broadcast, staff_links
from bot.shell.service import Received, Service
from models import (
    Announcement,
    AuditEntry,
    Delivery,
    Identity,
    Petition,
    StaffAddress,
    StaffLinkCode,
    StaffUser,
)
from tests.integration.console_helpers import Browser, add_people, email_of, signer
from tests.integration.twilio_helpers import Texter

JO_PHONE = "+447700900555"    # the editor's own mobile (SMS and WhatsApp)
JO_CHAT = "7100200300"        # the editor's own Telegram chat
SAM_PHONE = "+447700900666"   # an admin's mobile
AMIRA = "+447700900123"       # a supporter who signed and gets updates


@pytest.fixture
def staff(sessions: sessionmaker[Session]) -> dict[str, int]:
    return add_people(sessions)


def says(service: Service, channel: str, address: str, text: str,
         provider_id: str | None = None) -> list[str]:
    """What the bot answers `text` from this chat (as the adapter would hand it over)."""
    telegram = channel == Channel.TELEGRAM
    provider_id = provider_id or (str(secrets.randbelow(10**9)) if telegram
                                  else "SM" + secrets.token_hex(16))
    handled = service.receive(Received(Channel(channel), address, text, provider_id,
                                       phone="" if telegram else address))
    return [m.text for m in handled.replies]


def new_code(sessions: sessionmaker[Session], staff_user_id: int,
             at: dt.datetime | None = None) -> staff_links.Code:
    with sessions.begin() as session:
        return staff_links.issue_code(session, staff_user_id, at or dt.datetime.now(dt.UTC))


def linked(sessions: sessionmaker[Session]) -> set[tuple[int, str, str]]:
    with sessions() as session:
        return {(r.staff_user_id, r.channel, r.address) for r in session.execute(
            select(StaffAddress.staff_user_id, StaffAddress.channel, StaffAddress.address))}


def audited(sessions: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# Linking by code ---------------------------------------------------------------------------

@pytest.mark.parametrize("channel, address, typed", [
    ("sms", JO_PHONE, "{shown}"),
    ("whatsapp", JO_PHONE, "  pb-{first}-{last} "),
    ("telegram", JO_CHAT, "/start {payload}"),  # from the console's t.me link
])
def test_jo_links_her_chat_on_each_channel_by_sending_the_code(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int],
        channel: str, address: str, typed: str) -> None:
    code = new_code(sessions, staff["editor"])
    text = typed.format(shown=code.shown, first=code.digits[:4], last=code.digits[4:],
                        payload=code.start_payload)

    reply = says(service, channel, address, text)

    assert len(reply) == 1
    assert f"linked to the staff account {email_of('editor')} for test sends" in reply[0]
    assert linked(sessions) == {(staff["editor"], channel, address)}
    with sessions() as session:  # used up
        assert session.scalar(select(func.count()).select_from(StaffLinkCode)) == 0
    [entry] = audited(sessions, "test_sends.link")
    assert (entry.actor, entry.target) == (email_of("editor"), f"staff:{staff['editor']}")
    assert entry.detail is not None and entry.detail["channel"] == channel
    assert address not in str(entry.detail)  # partly masked, never in full


def test_an_expired_a_used_or_a_wrong_code_goes_on_to_the_conversation(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int]) -> None:
    greeting = says(service, "sms", "+447700900901", "Hi")
    expired = new_code(sessions, staff["editor"],
                       at=dt.datetime.now(dt.UTC) - staff_links.CODE_LIFETIME
                       - dt.timedelta(seconds=1))
    assert says(service, "sms", "+447700900902", expired.shown) == greeting

    used = new_code(sessions, staff["editor"])
    assert says(service, "sms", JO_PHONE, used.shown)[0].startswith("This chat is now linked")
    assert says(service, "sms", "+447700900903", used.shown) == greeting

    wrong = f"PB {(int(used.digits) + 1) % 10**8:08d}"
    assert says(service, "sms", "+447700900904", wrong) == greeting
    assert linked(sessions) == {(staff["editor"], "sms", JO_PHONE)}
    assert len(audited(sessions, "test_sends.link")) == 1


def test_text_that_only_looks_like_a_code_is_answered_as_before(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int]) -> None:
    code = new_code(sessions, staff["editor"])
    for n, text in enumerate((f"my code is {code.shown}", f"{code.shown}!", code.digits,
                              "PB 1234", f"SIGN {code.start_payload}")):
        reply = says(service, "sms", f"+4477009009{10 + n}", text)
        assert reply and not reply[0].startswith("This chat is now linked"), text
    assert linked(sessions) == set()
    with sessions() as session:  # still waiting for the real thing
        assert session.scalar(select(func.count()).select_from(StaffLinkCode)) == 1


def test_each_staff_member_has_one_code_and_a_code_links_its_own_account(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int]) -> None:
    first = new_code(sessions, staff["editor"])
    second = new_code(sessions, staff["editor"])  # replaces the first
    sams = new_code(sessions, staff["admin"])

    assert says(service, "sms", JO_PHONE, first.shown) == says(
        service, "sms", "+447700900901", "Hi")
    says(service, "sms", JO_PHONE, second.shown)
    says(service, "sms", SAM_PHONE, sams.shown)

    assert linked(sessions) == {(staff["editor"], "sms", JO_PHONE),
                                (staff["admin"], "sms", SAM_PHONE)}


def test_an_inactive_staff_members_code_links_nothing(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int]) -> None:
    code = new_code(sessions, staff["editor"])
    with sessions.begin() as session:
        user = session.get(StaffUser, staff["editor"])
        assert user is not None
        user.active = False

    assert not says(service, "sms", JO_PHONE, code.shown)[0].startswith("This chat")
    assert linked(sessions) == set()


def test_linking_again_on_a_channel_replaces_what_was_linked_there(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int]) -> None:
    says(service, "sms", JO_PHONE, new_code(sessions, staff["editor"]).shown)
    says(service, "telegram", JO_CHAT, new_code(sessions, staff["editor"]).shown)
    says(service, "sms", "+447700900777", new_code(sessions, staff["editor"]).shown)

    assert linked(sessions) == {(staff["editor"], "sms", "+447700900777"),
                                (staff["editor"], "telegram", JO_CHAT)}


def test_a_retried_code_message_gets_the_same_answer_and_links_once(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int]) -> None:
    code = new_code(sessions, staff["editor"])
    first = says(service, "sms", JO_PHONE, code.shown, provider_id="SM" + "a" * 32)
    again = says(service, "sms", JO_PHONE, code.shown, provider_id="SM" + "a" * 32)

    assert again == first
    assert len(audited(sessions, "test_sends.link")) == 1


def test_a_chat_that_said_stop_is_linked_without_a_word_and_gets_no_test(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int],
        config: Config) -> None:
    says(service, "sms", JO_PHONE, "Hi")
    assert says(service, "sms", JO_PHONE, "STOP")
    code = new_code(sessions, staff["editor"])

    assert says(service, "sms", JO_PHONE, code.shown) == []  # silence until START
    assert linked(sessions) == {(staff["editor"], "sms", JO_PHONE)}
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", "Hand-in on Friday.",
                                 email_of("editor"))
        user = session.get(StaffUser, staff["editor"])
        assert user is not None
        with pytest.raises(broadcast.BroadcastError, match="said STOP: send START"):
            staff_links.send_test(session, config, draft, user, dt.datetime.now(dt.UTC))
        [shown] = staff_links.addresses(session, staff["editor"])
        assert shown.stopped and not shown.ready


def test_only_a_hash_of_the_code_is_stored(
        sessions: sessionmaker[Session], staff: dict[str, int]) -> None:
    code = new_code(sessions, staff["editor"])
    with sessions() as session:
        row = session.scalars(select(StaffLinkCode)).one()
    assert code.digits not in row.code_hash and len(row.code_hash) == 64
    assert row.expires_at == code.expires_at
    assert re.fullmatch(r"PB \d{4} \d{4}", code.shown)


# The test send -----------------------------------------------------------------------------

def queued_to(sessions: sessionmaker[Session], announcement_id: int) -> set[tuple[str, str]]:
    with sessions() as session:
        return {(r.channel, r.address) for r in session.execute(
            select(Identity.channel, Identity.address)
            .join(Delivery, Delivery.identity_id == Identity.id)
            .where(Delivery.announcement_id == announcement_id))}


def test_a_test_goes_to_the_requesters_linked_chats_only_and_counts_for_nobody(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int],
        config: Config) -> None:
    for text in ("Hi", "SIGN", "YES", "Amira Khan", "SW1A 1AA", "YES", "YES"):
        says(service, "sms", AMIRA, text)  # a supporter who gets updates
    says(service, "sms", JO_PHONE, new_code(sessions, staff["editor"]).shown)
    says(service, "telegram", JO_CHAT, new_code(sessions, staff["editor"]).shown)
    says(service, "sms", SAM_PHONE, new_code(sessions, staff["admin"]).shown)
    with sessions() as session:
        signed_before = session.scalar(select(Petition.signature_count))
    now = dt.datetime.now(dt.UTC)

    with sessions.begin() as session:
        everyone = broadcast.create(session, config, "sirt", "Hand-in on Friday.",
                                    email_of("admin"))
        sms_only = broadcast.create(session, config, "sirt", "By text only.",
                                    email_of("admin"), broadcast.Audience(("sms",)))
        jo = session.get(StaffUser, staff["editor"])
        assert jo is not None
        to_all = staff_links.send_test(session, config, everyone, jo, now)
        to_sms = staff_links.send_test(session, config, sms_only, jo, now)

    assert queued_to(sessions, to_all.announcement_id) == {("sms", JO_PHONE),
                                                           ("telegram", JO_CHAT)}
    assert queued_to(sessions, to_sms.announcement_id) == {("sms", JO_PHONE)}
    assert (to_all.queued, to_sms.queued) == (2, 1)
    with sessions() as session:
        test = session.get(Announcement, to_all.announcement_id)
        assert test is not None
        assert (test.test_group, test.status, test.created_by, test.text) == (
            True, "sending", email_of("editor"), "Hand-in on Friday.")
        assert session.scalar(select(Petition.signature_count)) == signed_before
        source = session.get(Announcement, everyone.id)
        assert source is not None and source.status == "draft"  # the draft is untouched


def test_a_linked_chat_that_later_says_stop_gets_no_more_tests(
        service: Service, sessions: sessionmaker[Session], staff: dict[str, int],
        config: Config) -> None:
    says(service, "sms", JO_PHONE, new_code(sessions, staff["editor"]).shown)
    says(service, "telegram", JO_CHAT, new_code(sessions, staff["editor"]).shown)
    assert says(service, "telegram", JO_CHAT, "STOP")

    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", "News.", email_of("admin"))
        jo = session.get(StaffUser, staff["editor"])
        assert jo is not None
        test = staff_links.send_test(session, config, draft, jo, dt.datetime.now(dt.UTC))
        shown = {a.channel: a.ready for a in staff_links.addresses(session, jo.id)}
    assert queued_to(sessions, test.announcement_id) == {("sms", JO_PHONE)}
    assert shown == {"sms": True, "telegram": False}


def test_with_nothing_linked_the_test_is_refused_in_words_and_nothing_is_written(
        sessions: sessionmaker[Session], staff: dict[str, int], service: Service,
        config: Config) -> None:
    says(service, "sms", JO_PHONE, new_code(sessions, staff["editor"]).shown)
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", "News.", email_of("editor"),
                                 broadcast.Audience(("telegram", "whatsapp")))
        draft_id = draft.id
    for who, reason in (("admin", "no phone or Telegram linked"),
                        ("editor", "goes by Telegram or WhatsApp only")):
        with pytest.raises(broadcast.BroadcastError, match=reason), sessions.begin() as session:
            found = session.get(Announcement, draft_id)
            user = session.get(StaffUser, staff[who])
            assert found is not None and user is not None
            staff_links.send_test(session, config, found, user, dt.datetime.now(dt.UTC))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Announcement)) == 1


# The console -------------------------------------------------------------------------------

@pytest.fixture
def console(app: Flask, tmp_path: Path, staff: dict[str, int]) -> Flask:
    app.config.update(STAFF_CACHE_SECONDS=0,
                      STAFF_SIMULATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'simulator.db'}")
    return app


def logged_in(app: Flask, role: str) -> Browser:
    b = Browser(app.test_client())
    assert b.login(email_of(role)).status_code == 302
    return b


CODE_ON_PAGE = re.compile(r'id="link-code">(PB \d{4} \d{4})<')


def test_jo_gets_a_code_texts_it_sees_her_number_masked_and_unlinks_it(
        console: Flask, sessions: sessionmaker[Session], staff: dict[str, int]) -> None:
    jo = logged_in(console, "editor")
    page = jo.get("/staff/account/test-sends").get_data(as_text=True)
    assert "Nothing is linked yet" in page and "config.toml" not in page

    shown = jo.post("/staff/account/test-sends/code").get_data(as_text=True)
    found = CODE_ON_PAGE.search(shown)
    assert found, shown
    assert "+44 7700 900000" in shown  # the bot's SMS and WhatsApp number, to send it to
    assert Texter(console.test_client(), JO_PHONE).says(found.group(1))[0].startswith(
        "This chat is now linked")

    page = jo.get("/staff/account/test-sends").get_data(as_text=True)
    assert "+4477******55" in page and JO_PHONE not in page
    assert jo.post("/staff/account/test-sends/sms/unlink").status_code == 303
    assert linked(sessions) == set()
    assert [e.detail for e in audited(sessions, "test_sends.unlink")] == [{"channel": "sms"}]
    assert len(audited(sessions, "test_sends.code")) == 1


def test_a_viewer_has_no_test_sends(console: Flask) -> None:
    viewer = logged_in(console, "viewer")
    assert "Test sends" not in viewer.get("/staff/").get_data(as_text=True)
    assert viewer.get("/staff/account/test-sends").status_code == 403
    assert viewer.post("/staff/account/test-sends/code").status_code == 403


def test_send_a_test_to_me_on_a_draft_or_how_to_link_first(
        console: Flask, sessions: sessionmaker[Session], staff: dict[str, int],
        config: Config) -> None:
    signer(console.test_client(), AMIRA, "Amira Khan", "SW1A 1AA")
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", "Hand-in on Friday.",
                                 email_of("admin")).id
    jo = logged_in(console, "editor")

    page = jo.get(f"/staff/announcements/{draft}").get_data(as_text=True)
    assert "To send yourself a test, first link your phone or Telegram" in page
    assert "config.toml" not in page and "Send a test to me" not in page
    refused = jo.post(f"/staff/announcements/{draft}/test", follow_redirects=True)
    assert "no phone or Telegram linked" in refused.get_data(as_text=True)

    Texter(console.test_client(), JO_PHONE).says(new_code(sessions, staff["editor"]).shown)
    page = jo.get(f"/staff/announcements/{draft}").get_data(as_text=True)
    assert "Send a test to me" in page and "To your SMS (+4477******55)" in page
    sent = jo.post(f"/staff/announcements/{draft}/test")
    assert sent.status_code == 302
    test_id = int(sent.headers["Location"].rsplit("/", 1)[1])
    assert queued_to(sessions, test_id) == {("sms", JO_PHONE)}
    [entry] = audited(sessions, "announcement.test")
    assert (entry.actor, entry.detail) == (email_of("editor"), {"copy_of": draft, "queued": 1})
