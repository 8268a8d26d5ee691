"""The staff inbox's backend (issue #14; DESIGN §6, §8, §9): supporters' words kept for a
person, staff answering them through the outbox, and the privacy rules around both.

Supporters are made through the real inbound path (Service.receive); staff replies are sent
by the real worker through the real senders to the loopback fakes of Twilio and Telegram.

The cast: Amira signs by SMS and asks a question; Ben writes on WhatsApp; Chloe on Telegram;
Erin said STOP; Nadia writes something that suggests distress; Vic is a viewer, Ed an
editor, Ada an admin.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

import bot.entry.worker as worker_module
from bot.channels.telegram.gateway import TelegramGateway
from bot.channels.telegram.outbound import TelegramSender
from bot.channels.twilio.outbound import TwilioSender
from bot.core.conversation import Channel
from bot.core.gsm import is_gsm7
from bot.core.outcomes import Sender
from bot.entry.worker import BroadcastWorker
from bot.infra import metrics
from bot.infra.clock import utcnow
from bot.infra.config import Config, Inbox
from bot.infra.pacing import LocalPacer
from bot.infra.settings import Settings
from bot.shell import broadcast, inbox, retention, supporters
from bot.shell import people as people_module
from bot.shell.service import Received, Service
from bot.shell.staff import add_staff
from models import (
    AuditEntry,
    Delivery,
    FollowUp,
    Identity,
    InboxConversation,
    InboxMessage,
    StaffUser,
    Supporter,
)
from tests.conftest import together
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.twilio_api import FakeTwilio

AMIRA = "+447700900123"     # SMS
BEN = "+447700900456"       # WhatsApp
CHLOE = "5550001"           # Telegram
ERIN = "+447700900321"      # SMS, says STOP
NADIA = "+447700900555"     # SMS, distress
QUESTION = "Can I bring my mum to the hand-in? She had the treatment last year."
STAFF_TELEGRAM = 990001
PASSWORD = "correct horse battery staple"


# Fixtures -------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def brisk_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "IDLE_SLEEP", 0.02)


@pytest.fixture
def cfg(config: Config) -> Config:
    """The shipped config, quiet hours off, one staff Telegram id to notify."""
    return dataclasses.replace(
        config, broadcast=dataclasses.replace(config.broadcast, quiet_hours=None),
        staff=dataclasses.replace(config.staff, telegram_ids=(STAFF_TELEGRAM,)))


@dataclass
class Cast:
    service: Service
    sessions: sessionmaker[Session]
    counter: Iterator[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def says(self, channel: str, address: str, text: str) -> list[str]:
        provider_id = (str(next(self.counter)) if channel == Channel.TELEGRAM
                       else "SM" + secrets.token_hex(16))
        phone = "" if channel == Channel.TELEGRAM else address
        handled = self.service.receive(Received(Channel(channel), address, text, provider_id,
                                                phone=phone))
        return [m.text for m in handled.replies]

    def signs(self, channel: str, address: str, name: str, postcode: str) -> None:
        for text in ("Hi", "SIGN", "YES", name, postcode, "YES", "NO"):
            self.says(channel, address, text)

    def supporter(self, channel: str, address: str) -> int | None:
        with self.sessions() as session:
            return session.scalar(select(Identity.supporter_id).where(
                Identity.channel == channel, Identity.address == address))

    def conversation(self, channel: str, address: str) -> int:
        with self.sessions() as session:
            found = session.scalar(select(InboxConversation.id).where(
                InboxConversation.supporter_id == self.supporter(channel, address),
                InboxConversation.status == "open"))
        assert found is not None, "no open conversation"
        return found


@pytest.fixture
def people(cfg: Config, sessions: sessionmaker[Session]) -> Cast:
    service = Service(cfg, sessions)
    service.sync_petitions()
    return Cast(service, sessions)


@dataclass
class Staff:
    viewer: StaffUser
    editor: StaffUser
    admin: StaffUser


@pytest.fixture
def staff(sessions: sessionmaker[Session]) -> Staff:
    now = utcnow()
    with sessions.begin() as session:
        made = Staff(add_staff(session, "vic@charity.example", "viewer", PASSWORD, now),
                     add_staff(session, "ed@charity.example", "editor", PASSWORD, now),
                     add_staff(session, "ada@charity.example", "admin", PASSWORD, now))
        session.flush()
        session.expunge_all()
    return made


@pytest.fixture
def amira_asks(people: Cast) -> int:
    """Amira signs by SMS, then asks a question: her open conversation's id."""
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION)
    return people.conversation("sms", AMIRA)


def kept(sessions: sessionmaker[Session], conversation_id: int) -> list[tuple[str, str]]:
    with sessions() as session:
        return [(m.kind, m.text) for m in session.scalars(select(InboxMessage).where(
            InboxMessage.conversation_id == conversation_id).order_by(InboxMessage.id))]


def act(sessions: sessionmaker[Session], what: Any, *args: Any) -> Any:
    """A staff action in its own transaction, as the console and the API run them."""
    with sessions.begin() as session:
        result = what(session, *args)
        session.flush()
        session.expunge_all()
        return result


# The inbound path -------------------------------------------------------------------------

def test_amiras_question_after_signing_reaches_the_inbox_and_she_is_told_once(
        people: Cast, amira_asks: int, sessions: sessionmaker[Session]) -> None:
    assert kept(sessions, amira_asks) == [("in", QUESTION)]
    again = people.says("sms", AMIRA, "Also, is there parking nearby?")
    assert people.conversation("sms", AMIRA) == amira_asks  # joined, not a second one
    assert kept(sessions, amira_asks) == [("in", QUESTION),
                                          ("in", "Also, is there parking nearby?")]
    assert not any("reads these messages" in text for text in again)
    with sessions() as session:
        assert session.scalar(select(InboxConversation.told).where(
            InboxConversation.id == amira_asks)) is True
        thread = inbox.thread(session, amira_asks, utcnow())
    assert thread is not None
    kinds = [e.kind for e in thread.entries]
    assert kinds[0] == "in" and "bot" in kinds  # the bot's answers among her messages
    told = [e.text for e in thread.entries if e.kind == "bot"]
    assert any("reads these messages" in text for text in told)
    assert all(is_gsm7(text) for text in told)


def test_a_closed_conversation_is_followed_by_a_new_one(
        people: Cast, amira_asks: int, staff: Staff, sessions: sessionmaker[Session]) -> None:
    act(sessions, inbox.close, amira_asks, staff.editor, utcnow())
    with sessions() as session:
        assert inbox.summaries(session, "open", None) == []
        assert [s.id for s in inbox.summaries(session, "closed", None)] == [amira_asks]
    replies = people.says("sms", AMIRA, "One more thing: where do we meet?")
    second = people.conversation("sms", AMIRA)
    assert second != amira_asks
    assert any("reads these messages" in text for text in replies)  # told again: a new one
    assert kept(sessions, second) == [("in", "One more thing: where do we meet?")]


def test_sms_and_whatsapp_of_one_person_share_one_conversation(
        people: Cast, sessions: sessionmaker[Session]) -> None:
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION)
    first = people.conversation("sms", AMIRA)
    people.says("whatsapp", AMIRA, "Hello")
    people.says("whatsapp", AMIRA, "Sorry, I asked by text too: is my mum welcome?")
    with sessions() as session:
        conversation = session.get(InboxConversation, first)
        assert conversation is not None
        assert conversation.channel == "whatsapp"  # a reply goes where she last wrote
        assert session.scalar(select(func.count()).select_from(InboxConversation)) == 1


def test_inbox_context_feeds_status_and_the_answer_phrase(
        people: Cast, amira_asks: int, engine: Engine, sessions: sessionmaker[Session]) -> None:
    people.says("sms", AMIRA, "Thank you so much, you are doing a wonderful thing")
    held = [k for k in kept(sessions, amira_asks) if k[0] == "in"]
    with people.service.transactions.begin() as work:
        sender = people_module.load(work, Channel.SMS, AMIRA, AMIRA, "SM-context", False,
                                    utcnow())
        assert isinstance(sender, people_module.Sender)
        told, answer, messages = inbox.inbox_context(sender, utcnow(), Inbox())
    assert told is True and messages == len(held) >= 1
    assert answer.startswith("within 2 working days")
    status = " ".join(people.says("sms", AMIRA, "STATUS"))
    assert str(len(held)) in status


def test_two_messages_at_once_join_one_conversation(
        people: Cast, sessions: sessionmaker[Session]) -> None:
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    together([lambda: people.says("sms", AMIRA, "First question, about parking"),
              lambda: people.says("sms", AMIRA, "Second question, about timing")])
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboxConversation)) == 1
        assert session.scalar(select(func.count()).select_from(InboxMessage)) == 2


@pytest.mark.parametrize(("local", "expected"), [
    ("2026-12-07 10:00", "within 2 working days"),                       # Monday, open
    ("2026-12-07 08:00", "opens today at 09:00"),                        # Monday, early
    ("2026-12-07 18:30", "opens tomorrow at 09:00"),                     # Monday, late
    ("2026-12-04 18:30", "opens on Monday at 09:00"),                    # Friday evening
    ("2026-12-05 12:00", "opens on Monday at 09:00"),                    # Saturday
])
def test_the_answer_phrase_says_when_the_office_opens(local: str, expected: str) -> None:
    import zoneinfo
    now = dt.datetime.fromisoformat(local).replace(
        tzinfo=zoneinfo.ZoneInfo("Europe/London")).astimezone(dt.UTC)
    phrase = inbox.answer_phrase(Inbox(), now)
    assert phrase.startswith("within 2 working days")
    assert phrase.endswith(expected)
    assert is_gsm7(phrase)


def test_distress_is_flagged_and_listed_first(
        people: Cast, amira_asks: int, sessions: sessionmaker[Session]) -> None:
    people.signs("sms", NADIA, "Nadia Amari", "M1 1AE")
    people.says("sms", NADIA, "I feel hopeless since the diagnosis")
    nadia = people.supporter("sms", NADIA)
    with sessions() as session:
        listed = inbox.summaries(session, "open", None)
        assert listed[0].supporter_id == nadia
        assert listed[0].flagged and not listed[1].flagged
        assert listed[1].preview == QUESTION[:80]
        assert inbox.waiting_count(session) == 2


# Staff replies through the outbox --------------------------------------------------------

@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def senders(settings: Settings, fake_twilio: FakeTwilio,
            fake_telegram: FakeTelegram) -> Iterator[dict[str, Sender]]:
    twilio = dataclasses.replace(settings, twilio_api_base_url=fake_twilio.base_url)
    gateway = TelegramGateway(fake_telegram.token, fake_telegram.base_url)
    made: dict[str, Any] = {"sms": TwilioSender(twilio, "sms"),
                            "whatsapp": TwilioSender(twilio, "whatsapp"),
                            "telegram": TelegramSender(gateway)}
    yield made
    gateway.close()
    for sender in made.values():
        session = getattr(getattr(getattr(sender, "client", None), "http_client", None),
                          "session", None)
        if session is not None:
            session.close()


def work_until_idle(cfg: Config, sessions: sessionmaker[Session],
                    senders: dict[str, Sender], timeout: float = 60) -> None:
    """The real worker, run until nothing is left to send."""
    worker = BroadcastWorker(cfg, sessions, senders, LocalPacer({}), stale_after=3600)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(until_idle=True)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        worker.stop()
        thread.join(30)
        pytest.fail(f"the worker was not idle within {timeout}s")
    if errors:
        raise errors[0]


def test_eds_reply_reaches_amira_by_sms_ben_by_whatsapp_and_chloe_by_telegram(
        people: Cast, staff: Staff, cfg: Config, sessions: sessionmaker[Session],
        senders: dict[str, Sender], fake_twilio: FakeTwilio,
        fake_telegram: FakeTelegram) -> None:
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION)
    people.signs("whatsapp", BEN, "Ben Ross", "EH1 1YZ")
    people.says("whatsapp", BEN, "Who do I ask about the petition's hand-in?")
    people.signs("telegram", CHLOE, "Chloe Evans", "CF10 1EP")
    people.says("telegram", CHLOE, "Thanks <3 for doing this & keeping going")
    answers = {("sms", AMIRA): "Of course \u2014 your mum is very welcome.",
               ("whatsapp", BEN): "Ask me: I am organising it.",
               ("telegram", CHLOE): "Thank you, Chloe <3 & see you there"}
    entries = {}
    for (channel, address), text in answers.items():
        conversation = people.conversation(channel, address)
        entries[channel] = act(sessions, inbox.reply, conversation, staff.editor, text,
                               utcnow())
        assert entries[channel].delivery_state == "queued"
    work_until_idle(cfg, sessions, senders)
    sms = [r["body"] for r in fake_twilio.sent_to(AMIRA)]
    assert sms == ["Of course - your mum is very welcome."]  # GSM-7, nothing added
    assert [r["body"] for r in fake_twilio.sent_to("whatsapp:" + BEN)] == [
        "Ask me: I am organising it."]
    assert [m["text"] for m in fake_telegram.messages_to(int(CHLOE))] [-1] == (
        "Thank you, Chloe &lt;3 &amp; see you there")
    conversations = [people.conversation(channel, address) for channel, address in answers]
    with sessions() as session:
        for conversation in conversations:
            found = inbox.thread(session, conversation, utcnow())
            assert found is not None
            staff_entries = [e for e in found.entries if e.kind == "staff"]
            assert [e.delivery_state for e in staff_entries] == ["sent"]
            assert staff_entries[0].staff_name == "ed@charity.example"
            assert found.summary.waiting_since is None
            assert found.summary.assigned_to == staff.editor.id  # replying took it
        assert inbox.waiting_count(session) == 0
    # Sent once: a second worker finds nothing to send.
    work_until_idle(cfg, sessions, senders)
    assert len(fake_twilio.sent_to(AMIRA)) == 1


def test_a_reply_goes_out_in_quiet_hours_and_its_delivery_report_shows(
        people: Cast, amira_asks: int, staff: Staff, cfg: Config,
        sessions: sessionmaker[Session], senders: dict[str, Sender], fake_twilio: FakeTwilio,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Quiet hours hold announcements back, not a person's answer to a person."""
    monkeypatch.setattr(worker_module, "in_quiet_hours", lambda now, config: True)
    monkeypatch.setattr(worker_module, "QUIET_SLEEP", 0.02)
    entry = act(sessions, inbox.reply, amira_asks, staff.editor, "Yes, she is welcome",
                utcnow())
    work_until_idle(cfg, sessions, senders)
    [sent] = fake_twilio.sent_to(AMIRA)
    with sessions.begin() as session:
        provider_id = session.scalar(select(Delivery.provider_id).where(
            Delivery.inbox_message_id == entry.id))
        assert provider_id == sent["sid"]
        assert broadcast.record_status(session, provider_id, "delivered", None, utcnow())
    with sessions() as session:
        found = inbox.thread(session, amira_asks, utcnow())
    assert found is not None
    assert [e.delivery_state for e in found.entries if e.kind == "staff"] == ["delivered"]


def test_a_staff_notice_reaches_staff_telegram_with_a_link_and_nothing_personal(
        people: Cast, cfg: Config, sessions: sessionmaker[Session],
        senders: dict[str, Sender], fake_telegram: FakeTelegram) -> None:
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION)
    people.says("sms", AMIRA, "And another question")  # already waiting: no second notice
    conversation = people.conversation("sms", AMIRA)
    work_until_idle(cfg, sessions, senders)
    notices = [m["text"] for m in fake_telegram.messages_to(STAFF_TELEGRAM)]
    assert len(notices) == 1
    assert f"/staff/inbox/{conversation}" in notices[0]
    for personal in ("Amira", "Khan", AMIRA, "7700", "mum", "SW1A"):
        assert personal not in notices[0]


def test_no_reply_after_stop_nor_to_someone_unreachable(
        people: Cast, staff: Staff, sessions: sessionmaker[Session]) -> None:
    people.signs("sms", ERIN, "Erin Shaw", "M1 1AE")
    people.says("sms", ERIN, "Why did you text me so late?")
    conversation = people.conversation("sms", ERIN)
    people.says("sms", ERIN, "STOP")
    with sessions() as session:
        found = inbox.thread(session, conversation, utcnow())
    assert found is not None and not found.reach.can_send
    assert found.reach.reason == "They said STOP on SMS: replies cannot be sent."
    with pytest.raises(inbox.CannotReply) as refused:
        act(sessions, inbox.reply, conversation, staff.editor, "Sorry!", utcnow())
    assert "STOP" in refused.value.reason
    people.signs("telegram", CHLOE, "Chloe Evans", "CF10 1EP")
    people.says("telegram", CHLOE, "A question for you")
    people.service.mark_unreachable(Channel.TELEGRAM, CHLOE)
    with pytest.raises(inbox.CannotReply, match="cannot be reached"):
        act(sessions, inbox.reply, people.conversation("telegram", CHLOE), staff.admin,
            "Hello", utcnow())
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.inbox_message_id.is_not(None))) == 0


def test_whatsapp_outside_the_24_hour_window_cannot_be_answered(
        people: Cast, staff: Staff, sessions: sessionmaker[Session]) -> None:
    people.signs("whatsapp", BEN, "Ben Ross", "EH1 1YZ")
    people.says("whatsapp", BEN, "Who do I ask about the hand-in?")
    conversation = people.conversation("whatsapp", BEN)
    now = utcnow()
    with sessions() as session:
        within = inbox.thread(session, conversation, now)
        later = inbox.thread(session, conversation, now + dt.timedelta(days=2))
    assert within is not None and within.reach.can_send
    assert within.reach.window_closes_at is not None
    assert later is not None and not later.reach.can_send
    assert later.reach.reason.startswith("Outside WhatsApp's 24-hour window (last message 2")
    assert "approved template" in later.reach.reason
    with pytest.raises(inbox.CannotReply, match="24-hour window"):
        act(sessions, inbox.reply, conversation, staff.editor, "Sorry for the delay",
            now + dt.timedelta(days=2))


def test_vic_the_viewer_reads_but_may_not_reply_assign_note_or_close(
        people: Cast, amira_asks: int, staff: Staff, sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert inbox.thread(session, amira_asks, utcnow()) is not None
    for action, args in ((inbox.reply, ("Hello",)), (inbox.note, ("A note",)),
                         (inbox.assign, ()), (inbox.close, ())):
        with pytest.raises(inbox.NotAllowed):
            act(sessions, action, amira_asks, staff.viewer, *args, utcnow())
    with pytest.raises(inbox.NotAllowed):
        act(sessions, inbox.save_reply, staff.viewer, "Hello", "Hello there")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboxMessage).where(
            InboxMessage.kind != "in")) == 0


def test_staff_actions_are_audited_and_notes_never_sent(
        people: Cast, amira_asks: int, staff: Staff, sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    act(sessions, inbox.assign, amira_asks, staff.admin, now)
    with sessions() as session:
        assert [s.id for s in inbox.summaries(session, "mine", staff.admin.id)] == [amira_asks]
        assert inbox.summaries(session, "mine", staff.editor.id) == []
    note = act(sessions, inbox.note, amira_asks, staff.admin, "Called her back", now)
    question = next(m for m in act(sessions, lambda s: s.scalars(select(InboxMessage)).all())
                    if m.kind == "in")
    act(sessions, inbox.follow_up, question.id, staff.admin, "Passed to the events team", now)
    saved = act(sessions, inbox.save_reply, staff.editor, "Hand-in", "See you at 10am!")
    with sessions() as session:
        assert inbox.saved_replies(session) == [(saved, "Hand-in", "See you at 10am!")]
    act(sessions, inbox.delete_saved_reply, staff.editor, saved)
    with pytest.raises(inbox.Invalid):
        act(sessions, inbox.reply, amira_asks, staff.admin, "   ", now)
    with pytest.raises(inbox.NotFound):
        act(sessions, inbox.reply, 999999, staff.admin, "Hello", now)
    act(sessions, inbox.close, amira_asks, staff.admin, now)
    with sessions() as session:
        found = inbox.thread(session, amira_asks, now)
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.inbox_message_id == note.id)) == 0
    assert found is not None
    assert [f.action for f in found.follow_ups] == ["Passed to the events team"]
    assert ("note", "Called her back") in [(e.kind, e.text) for e in found.entries]
    assert actions == ["inbox.assign", "inbox.note", "inbox.follow_up",
                       "inbox.saved_reply.create", "inbox.saved_reply.delete", "inbox.close"]
    with pytest.raises(inbox.CannotReply, match="closed"):
        act(sessions, inbox.reply, amira_asks, staff.admin, "Hello", now)


def test_an_sms_reply_too_long_for_three_segments_is_refused(
        people: Cast, amira_asks: int, staff: Staff, sessions: sessionmaker[Session]) -> None:
    with pytest.raises(inbox.Invalid, match="segments"):
        act(sessions, inbox.reply, amira_asks, staff.editor, "word " * 120, utcnow())


# Privacy ------------------------------------------------------------------------------------

def test_delete_erases_amiras_inbox_and_the_replies_to_her(
        people: Cast, amira_asks: int, staff: Staff, sessions: sessionmaker[Session]) -> None:
    entry = act(sessions, inbox.reply, amira_asks, staff.editor, "Yes, she is welcome", utcnow())
    act(sessions, inbox.follow_up, entry.id, staff.editor, "Checked", utcnow())
    people.says("sms", AMIRA, "DELETE")
    people.says("sms", AMIRA, "YES")
    with sessions() as session:
        for model in (InboxConversation, InboxMessage, FollowUp):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.text.contains("welcome"))) == 0
        assert inbox.summaries(session, "open", None) == []


def test_the_subject_access_export_holds_the_inbox(
        people: Cast, amira_asks: int, staff: Staff, sessions: sessionmaker[Session]) -> None:
    act(sessions, inbox.reply, amira_asks, staff.editor, "Yes, she is welcome", utcnow())
    supporter_id = people.supporter("sms", AMIRA)
    assert supporter_id is not None
    with sessions() as session:
        export = supporters.subject_access(session, supporter_id)
    assert export is not None
    [conversation] = export["inbox"]
    texts = [(m["kind"], m["text"]) for m in conversation["messages"]]
    assert ("in", QUESTION) in texts and ("staff", "Yes, she is welcome") in texts
    assert "Yes, she is welcome" in [m["text"] for m in export["messages_sent"]]


def test_retention_removes_closed_conversations_after_inbox_days(
        people: Cast, amira_asks: int, staff: Staff, cfg: Config,
        sessions: sessionmaker[Session]) -> None:
    people.signs("whatsapp", BEN, "Ben Ross", "EH1 1YZ")
    people.says("whatsapp", BEN, "Still open")
    now = utcnow()
    act(sessions, inbox.close, amira_asks, staff.editor, now)
    days = cfg.retention.inbox_days
    with sessions.begin() as session:
        early = retention.purge(session, cfg, now + dt.timedelta(days=days - 1))
    assert early.inbox_conversations == 0
    with sessions.begin() as session:
        # The people stay; only the old closed conversation goes (Ben wrote again lately).
        session.execute(update(Identity).values(last_inbound_at=now + dt.timedelta(days=days)))
        session.execute(update(InboxConversation).where(InboxConversation.status == "open")
                        .values(last_message_at=now + dt.timedelta(days=days)))
        late = retention.purge(session, cfg, now + dt.timedelta(days=days + 1))
    assert late.inbox_conversations == 1
    with sessions() as session:
        left = session.scalars(select(InboxConversation.status)).all()
    assert left == ["open"]
    with sessions.begin() as session:  # nobody closed it, and nothing was said for as long
        session.execute(update(Identity).values(last_inbound_at=now + dt.timedelta(days=3 * days)))
        silent = retention.purge(session, cfg, now + dt.timedelta(days=2 * days + 1))
    assert silent.inbox_conversations == 1


def test_an_open_conversation_keeps_a_never_signed_writer(
        people: Cast, cfg: Config, sessions: sessionmaker[Session]) -> None:
    people.says("sms", NADIA, "Hi")
    people.says("sms", NADIA, "PERSON")
    people.says("sms", NADIA, "Is this the charity that helped my dad?")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboxConversation)) == 1
    later = utcnow() + dt.timedelta(days=cfg.retention.unfinished_conversation_days + 1)
    with sessions.begin() as session:
        report = retention.purge(session, cfg, later)
    assert report.people == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Supporter)) == 1


def test_the_inbox_never_reaches_the_logs(
        people: Cast, staff: Staff, sessions: sessionmaker[Session],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION)
    act(sessions, inbox.reply, people.conversation("sms", AMIRA), staff.editor,
        "Yes, your mum is welcome", utcnow())
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for secret in ("mum", "Amira", AMIRA, "welcome"):
        assert secret not in logged


# Metrics ----------------------------------------------------------------------------------

def sample(engine: Engine, name: str, labels: str = "") -> float:
    body, _ = metrics.exposition(engine, None)
    for line in body.decode().splitlines():
        if line.startswith(name + labels + " ") or (
                not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return 0.0


def test_metrics_show_waiting_conversations_and_time_to_first_reply(
        people: Cast, amira_asks: int, staff: Staff, engine: Engine,
        sessions: sessionmaker[Session]) -> None:
    assert sample(engine, "petitionbot_inbox_waiting") == 1
    replies = '{channel="sms"}'
    before = sample(engine, "petitionbot_inbox_first_reply_seconds_count", replies)
    act(sessions, inbox.reply, amira_asks, staff.editor, "Yes", utcnow())
    act(sessions, inbox.reply, amira_asks, staff.editor, "And bring a friend", utcnow())
    assert sample(engine, "petitionbot_inbox_waiting") == 0
    assert sample(engine, "petitionbot_inbox_first_reply_seconds_count", replies) == before + 1


# Configuration ------------------------------------------------------------------------------

def test_inbox_settings_are_read_and_checked() -> None:
    import tomllib

    from bot.infra.config import ConfigError, parse_config
    from tests.conftest import CONFIG

    data = tomllib.loads(CONFIG.read_text())
    data["inbox"] = {"answer_within": "3 days", "office_hours": "Sat-Mon 10:00-14:30",
                     "timezone": "Europe/Paris"}
    data["retention"]["inbox_days"] = 90
    parsed = parse_config(data, CONFIG.parent)
    assert parsed.inbox == Inbox("3 days", (0, 5, 6), dt.time(10), dt.time(14, 30),
                                 "Europe/Paris")
    assert parsed.retention.inbox_days == 90
    data["inbox"] = {"office_hours": "weekdays 9-5", "answer_within": "2 days \u2014 maybe",
                     "timezone": "Mars/Olympus", "reply_by": 1}
    with pytest.raises(ConfigError) as error:
        parse_config(data, CONFIG.parent)
    assert {e.split(":")[0] for e in error.value.errors} >= {
        "inbox.office_hours", "inbox.answer_within", "inbox.timezone", "inbox.reply_by"}


def test_when_chloe_links_her_telegram_to_amiras_number_their_inbox_becomes_one(
        people: Cast, amira_asks: int, sessions: sessionmaker[Session]) -> None:
    """Two records of one person merged (a shared contact): nothing kept for staff is lost,
    a flagged message least of all; one conversation stays open, with every message."""
    people.says("telegram", CHLOE, "Hi")
    worry = "I feel hopeless, my mum is so ill and nobody answers my questions"
    people.says("telegram", CHLOE, worry)
    chloes = people.conversation("telegram", CHLOE)
    assert chloes != amira_asks

    people.service.receive(Received(Channel.TELEGRAM, CHLOE, "", "contact-1", phone=AMIRA,
                                    contact="own"))

    assert people.supporter("telegram", CHLOE) == people.supporter("sms", AMIRA)
    with sessions() as session:
        conversations = session.scalars(select(InboxConversation).where(
            InboxConversation.supporter_id == people.supporter("sms", AMIRA))).all()
    [open_one] = [c for c in conversations if c.status == "open"]
    assert len(conversations) == 1 and open_one.id == amira_asks
    texts = [text for kind, text in kept(sessions, amira_asks) if kind == "in"]
    assert QUESTION in texts and worry in texts
    assert open_one.flagged  # Chloe's words suggested distress: the merged one stays flagged
