"""Announcements from draft to the supporter's phone (DESIGN §7, §8; platform-facts B5-B8).

Supporters are made through the real signing path (Service.receive); the real worker sends
through the real TwilioSender (twilio-python over HTTP to a fake Twilio REST server) and the
real TelegramSender (python-telegram-bot over HTTP to a fake Bot API server). The worker's
clock is injected, so retries, schedules and quiet hours need no sleeping: `drive` runs the
worker until it is idle and moves the clock on whenever the only thing left is waiting.

The cast: Amira (SMS), Ben (WhatsApp), Chloe and Hari (Telegram) want updates; Dev said NO
to updates; Erin said STOP; Farid blocked the bot on Telegram; Gwen asked to be deleted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import re
import secrets
import socket
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

import bot.channels.twilio.outbound as twilio_channel
import bot.entry.worker as worker_module
from bot.channels.telegram.gateway import TelegramGateway
from bot.channels.telegram.outbound import TelegramSender
from bot.channels.twilio.outbound import TwilioSender
from bot.core.conversation import Channel
from bot.core.gsm import is_gsm7
from bot.core.outcomes import Sender
from bot.entry.cli import main as cli
from bot.entry.worker import BroadcastWorker, in_quiet_hours
from bot.infra.config import Config
from bot.infra.pacing import LocalPacer
from bot.infra.settings import Settings
from bot.shell import broadcast
from bot.shell.broadcast import Audience
from bot.shell.service import Received, Service
from models import Announcement, Delivery, Identity, Petition, Subscription
from tests.conftest import CONFIG, PUBLIC_URL, TWILIO_SID
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.twilio_api import FakeTwilio
from tests.integration.twilio_helpers import sign

LONDON = zoneinfo.ZoneInfo("Europe/London")
STATUS_PATH = "/twilio/status"
TEMPLATE = "HX" + "b" * 32

AMIRA = "+447700900123"        # SMS, SW1A 1AA (England)
BEN = "+447700900456"          # WhatsApp, EH1 1YZ (Scotland)
CHLOE = "5550001"              # Telegram, CF10 1EP (Wales)
HARI = "5550003"               # Telegram, EH3 9AA (Scotland)
DEV = "+447700900789"          # SMS, BT1 1AA, said NO to updates
ERIN = "+447700900321"         # SMS, M1 1AE, said STOP
FARID = "5550002"              # Telegram, B1 1AA, blocked the bot
GWEN = "+447700900654"         # WhatsApp, G1 1AA, DELETEd
IVY = "+447700900987"          # SMS, LS1 1UR (England)
WA = "whatsapp:"
EVERYONE = Audience()


# Fixtures -------------------------------------------------------------------------------

class Clock:
    """The worker's (and the senders') idea of now; moved on by the test or by `drive`."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture(autouse=True)
def brisk_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's idle naps are short, so driving it to idle is quick (nothing asserts
    on time)."""
    monkeypatch.setattr(worker_module, "IDLE_SLEEP", 0.02)


@pytest.fixture
def cfg(config: Config) -> Config:
    """The shipped config with quiet hours off."""
    return dataclasses.replace(config, broadcast=dataclasses.replace(config.broadcast,
                                                                     quiet_hours=None))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def twilio_settings(settings: Settings, fake_twilio: FakeTwilio) -> Settings:
    return dataclasses.replace(settings, twilio_api_base_url=fake_twilio.base_url)


@pytest.fixture
def gateway(fake_telegram: FakeTelegram) -> Iterator[TelegramGateway]:
    gateway = TelegramGateway(fake_telegram.token, fake_telegram.base_url)
    yield gateway
    gateway.close()


def twilio_sender(settings: Settings, channel: str, clock: Clock) -> TwilioSender:
    return TwilioSender(settings, channel, clock)


@pytest.fixture
def senders(twilio_settings: Settings, gateway: TelegramGateway,
            clock: Clock) -> Iterator[dict[str, Sender]]:
    made: dict[str, Any] = {"sms": twilio_sender(twilio_settings, "sms", clock),
                            "whatsapp": twilio_sender(twilio_settings, "whatsapp", clock),
                            "telegram": TelegramSender(gateway)}
    yield made
    for sender in made.values():
        session = getattr(getattr(getattr(sender, "client", None), "http_client", None),
                          "session", None)
        if session is not None:
            session.close()


@dataclass
class Cast:
    """The supporters, made by talking to the bot; `ids` maps a name to its identity id."""

    service: Service
    sessions: sessionmaker[Session]
    ids: dict[str, int]
    counter: Iterator[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def says(self, channel: str, address: str, text: str) -> list[str]:
        provider_id = (str(next(self.counter)) if channel == Channel.TELEGRAM
                       else "SM" + secrets.token_hex(16))
        phone = "" if channel == Channel.TELEGRAM else address
        handled = self.service.receive(Received(Channel(channel), address, text, provider_id,
                                                phone=phone))
        return [m.text for m in handled.replies]

    def signs(self, name: str, channel: str, address: str, full_name: str, postcode: str,
              updates: str = "YES") -> int:
        for text in ("Hi", "SIGN", "YES", full_name, postcode, "YES", updates):
            self.says(channel, address, text)
        identity_id = self.identity(channel, address)
        assert identity_id is not None
        with self.sessions() as session:
            subscribed = session.scalar(select(func.count()).select_from(Subscription).where(
                Subscription.identity_id == identity_id))
        assert subscribed == (1 if updates == "YES" else 0), f"{name} did not finish signing"
        self.ids[name] = identity_id
        return identity_id

    def identity(self, channel: str, address: str) -> int | None:
        with self.sessions() as session:
            return session.scalar(select(Identity.id).where(Identity.channel == channel,
                                                            Identity.address == address))


@pytest.fixture
def people(cfg: Config, sessions: sessionmaker[Session]) -> Cast:
    service = Service(cfg, sessions)
    service.sync_petitions()
    return Cast(service, sessions, {})


@pytest.fixture
def cast(people: Cast) -> Cast:
    """Everyone: four who get updates, four who must get nothing."""
    people.signs("amira", "sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.signs("ben", "whatsapp", BEN, "Ben Ross", "EH1 1YZ")
    people.signs("chloe", "telegram", CHLOE, "Chloe Evans", "CF10 1EP")
    people.signs("hari", "telegram", HARI, "Hari Patel", "EH3 9AA")
    people.signs("dev", "sms", DEV, "Dev Malik", "BT1 1AA", updates="NO")
    people.signs("erin", "sms", ERIN, "Erin Shaw", "M1 1AE")
    people.says("sms", ERIN, "STOP")
    people.signs("farid", "telegram", FARID, "Farid Haddad", "B1 1AA")
    people.service.mark_unreachable(Channel.TELEGRAM, FARID)  # a reply found him blocking us
    people.signs("gwen", "whatsapp", GWEN, "Gwen Lloyd", "G1 1AA")
    people.says("whatsapp", GWEN, "DELETE")
    people.says("whatsapp", GWEN, "YES")
    assert people.identity("whatsapp", GWEN) is None  # erased
    del people.ids["gwen"]  # her identity id may be reused (SQLite)
    return people


# Helpers --------------------------------------------------------------------------------

def announce(sessions: sessionmaker[Session], cfg: Config, text: str, now: dt.datetime,
             audience: Audience = EVERYONE, approve: bool = True,
             at: dt.datetime | None = None, **extra: Any) -> int:
    """Create (and approve) an announcement; its id."""
    with sessions.begin() as session:
        announcement = broadcast.create(session, cfg, "sirt", text, "staff@planets",
                                        audience, now=now, **extra)
        if approve:
            broadcast.approve(session, cfg, announcement, "lead@planets", now, at=at)
        return announcement.id


def rows(sessions: sessionmaker[Session], announcement_id: int) -> dict[int, Delivery]:
    """The announcement's deliveries by identity id (detached copies)."""
    with sessions() as session:
        found = session.scalars(select(Delivery).where(
            Delivery.announcement_id == announcement_id)).all()
        session.expunge_all()
    return {d.identity_id: d for d in found}


def statuses(sessions: sessionmaker[Session], announcement_id: int) -> dict[int, str]:
    return {i: d.status for i, d in rows(sessions, announcement_id).items()}


def status_of(sessions: sessionmaker[Session], announcement_id: int) -> str:
    with sessions() as session:
        found = session.get(Announcement, announcement_id)
        assert found is not None
        return found.status


def identity(sessions: sessionmaker[Session], identity_id: int) -> Identity:
    with sessions() as session:
        found = session.get(Identity, identity_id)
        assert found is not None
        session.expunge(found)
        return found


def make_worker(cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
                clock: Callable[[], dt.datetime], pacer: Any = None) -> BroadcastWorker:
    return BroadcastWorker(cfg, sessions, senders, pacer or LocalPacer({}), clock=clock,
                           stale_after=3600)


def drive(cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
          clock: Clock, pacer: Any = None, timeout: float = 60) -> BroadcastWorker:
    """Run a worker until idle. Whenever nothing is claimed, sending or due, and a retry
    waits for a later time, move the clock to it: backoff without sleeping."""
    worker = make_worker(cfg, sessions, senders, clock, pacer)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(until_idle=True)
        except BaseException as error:  # surfaced in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run, name="test-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(0.02)
        with sessions() as session:
            live = Delivery.announcement_id.in_(select(Announcement.id).where(
                Announcement.status == "sending"))
            busy = session.scalar(select(func.count()).select_from(Delivery).where(
                live, Delivery.status.in_(("claimed", "sending"))))
            due = session.scalar(select(func.count()).select_from(Delivery).where(
                live, Delivery.status == "pending",
                (Delivery.next_attempt_at.is_(None)) | (Delivery.next_attempt_at <= clock())))
            later = session.scalar(select(func.min(Delivery.next_attempt_at)).where(
                live, Delivery.status == "pending", Delivery.next_attempt_at > clock()))
        if not busy and not due and later is not None:
            clock.now = max(clock.now, later + dt.timedelta(milliseconds=1))
    if thread.is_alive():
        worker.stop()
        thread.join(30)
        pytest.fail(f"the worker was not idle within {timeout}s")
    if errors:
        raise errors[0]
    return worker


def step(worker: BroadcastWorker, sessions: sessionmaker[Session], channel: str) -> list[int]:
    """One claim and one batch on one channel, in this thread; the delivery ids claimed."""
    with sessions.begin() as session:
        jobs = worker.claim(session, channel)
    worker.send_batch(channel, jobs)
    return [job.delivery_id for job in jobs]


def says_how_to_stop(text: str) -> bool:
    return re.search(r"\b(Reply|Send|Text) STOP\b", text) is not None


def twilio_status(sid: str, status: str, to: str, sender: str = "+447700900000",
                  error_code: str | None = None) -> dict[str, str]:
    """A status callback form as Twilio posts it (platform-facts B5)."""
    form = {"SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "To": to,
            "MessageSid": sid, "AccountSid": TWILIO_SID, "From": sender,
            "ApiVersion": "2010-04-01"}
    if error_code:
        form["ErrorCode"] = error_code
    if status in ("delivered", "undelivered") and not to.startswith(WA):
        form["RawDlrDoneDate"] = "2611271530"
    return form


def post_status(client: FlaskClient, form: dict[str, str],
                signature: str | None = None, url: str = PUBLIC_URL + STATUS_PATH) -> int:
    """Twilio calling a status callback URL (with the ?d=delivery our sends carry, or not)."""
    header = sign(form, url=url) if signature is None else signature
    path = url.removeprefix(PUBLIC_URL)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": header},
                           base_url=PUBLIC_URL)
    return response.status_code


# Who gets it ---------------------------------------------------------------------------

def test_every_subscriber_gets_exactly_one_message_on_their_own_channel(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    # Amira also writes on WhatsApp (the same person), but opted in to updates only by SMS.
    assert "Welcome back" in "\n".join(cast.says("whatsapp", AMIRA, "Hi"))
    aid = announce(sessions, cfg, "NHS England meets us next week. Thank you!", clock())

    # The outbox is complete before anything is sent: one pending row per recipient.
    queued = rows(sessions, aid)
    assert {i: (d.status, d.channel) for i, d in queued.items()} == {
        ids["amira"]: ("pending", "sms"), ids["ben"]: ("pending", "whatsapp"),
        ids["chloe"]: ("pending", "telegram"), ids["hari"]: ("pending", "telegram")}
    assert fake_twilio.requests == [] and fake_telegram.sent == []
    assert status_of(sessions, aid) == "sending"

    drive(cfg, sessions, senders, clock, pacer=LocalPacer(dict(cfg.broadcast.rates)))

    assert [r["to"] for r in fake_twilio.requests] in (
        [AMIRA, WA + BEN], [WA + BEN, AMIRA])
    assert sorted(m["chat_id"] for m in fake_telegram.sent) == sorted([int(CHLOE), int(HARI)])
    done = rows(sessions, aid)
    assert {i: d.status for i, d in done.items()} == dict.fromkeys(done, "sent")
    assert {d.provider_id for i, d in done.items() if d.channel != "telegram"} == {
        r["sid"] for r in fake_twilio.sent}
    assert all(d.attempts == 1 and d.sent_at is not None for d in done.values())
    assert status_of(sessions, aid) == "sent"
    # Nobody who said NO or STOP, is unreachable or was deleted was contacted.
    for number in (DEV, ERIN, GWEN):
        assert fake_twilio.requests_to(number) == fake_twilio.requests_to(WA + number) == []
    assert fake_twilio.requests_to(WA + AMIRA) == []
    assert fake_telegram.messages_to(int(FARID)) == []
    # Twilio is told where to report delivery.
    assert {r["status_callback"].split("?d=")[0] for r in fake_twilio.requests} == {
        PUBLIC_URL + STATUS_PATH}
    assert [r["from"] for r in fake_twilio.requests if r["to"] == AMIRA] == ["+447700900000"]
    assert [r["from"] for r in fake_twilio.requests if r["to"] == WA + BEN] == [
        "whatsapp:+447700900000"]

    # Running again sends nothing twice.
    drive(cfg, sessions, senders, clock)
    assert len(fake_twilio.requests) == 2 and len(fake_telegram.sent) == 2


def test_every_channel_names_the_charity_and_says_how_to_stop(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    aid = announce(sessions, cfg, "We’re nearly at 50,000 – thank you! 🎉 <b>Share</b> it",
                   clock())
    drive(cfg, sessions, senders, clock)
    assert status_of(sessions, aid) == "sent"

    [sms] = fake_twilio.sent_to(AMIRA)
    [whatsapp] = fake_twilio.sent_to(WA + BEN)
    telegram = [m["text"] for m in fake_telegram.sent]
    assert len(telegram) == 2
    for text in (sms["body"], whatsapp["body"], *telegram):
        assert cfg.organisation.short_name in text or cfg.organisation.name in text
        assert says_how_to_stop(text), text
    assert is_gsm7(sms["body"]) and "We're nearly at 50,000 - thank you!" in sms["body"]
    assert "We’re nearly at 50,000 – thank you! 🎉" in whatsapp["body"]  # WhatsApp is Unicode
    # Telegram is sent as HTML: the staff's text is shown, not interpreted.
    assert all("&lt;b&gt;Share&lt;/b&gt;" in t and m["parse_mode"] == "HTML"
               for t, m in zip(telegram, fake_telegram.sent, strict=True))


def test_a_text_that_already_names_the_charity_and_says_stop_is_not_doubled(
        cfg: Config) -> None:
    text = f"{cfg.organisation.name}: thank you. Reply STOP to stop these messages."
    for channel in ("sms", "whatsapp", "telegram"):
        composed = broadcast.compose(text, channel, cfg)
        assert composed.count("STOP") == 1 and composed.startswith(cfg.organisation.name)


def test_the_word_stop_used_otherwise_still_gets_the_instruction(cfg: Config) -> None:
    """"We will not STOP" does not tell anyone how to stop the messages."""
    for channel in ("sms", "whatsapp", "telegram"):
        composed = broadcast.compose("We will not STOP until NHS England funds SIRT.",
                                     channel, cfg)
        assert says_how_to_stop(composed), composed


def test_a_stop_after_the_start_skips_the_supporter(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    aid = announce(sessions, cfg, "An update on SIRT.", clock())
    assert statuses(sessions, aid)[ids["amira"]] == "pending"
    cast.says("sms", AMIRA, "STOP")  # before the worker gets to her
    assert (rows(sessions, aid)[ids["amira"]].status,
            rows(sessions, aid)[ids["amira"]].error_code) == ("skipped", "opted_out")

    drive(cfg, sessions, senders, clock)
    assert fake_twilio.requests_to(AMIRA) == []
    assert statuses(sessions, aid) == {ids["amira"]: "skipped", ids["ben"]: "sent",
                                       ids["chloe"]: "sent", ids["hari"]: "sent"}
    assert status_of(sessions, aid) == "sent"


def test_a_stop_while_the_row_is_claimed_is_honoured_at_send_time(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    cast.signs("ivy", "sms", IVY, "Ivy Green", "LS1 1UR")
    aid = announce(sessions, cfg, "An update on SIRT.", clock())
    worker = make_worker(cfg, sessions, senders, clock)
    with sessions.begin() as session:
        jobs = worker.claim(session, "sms")  # the worker holds Amira's and Ivy's rows ...
    assert {j.identity_id for j in jobs} == {ids["amira"], ids["ivy"]}
    assert set(statuses(sessions, aid).values()) >= {"claimed"}
    cast.says("sms", AMIRA, "stop")          # ... when Amira's STOP arrives
    worker.send_batch("sms", jobs)

    assert fake_twilio.requests_to(AMIRA) == [] and len(fake_twilio.sent_to(IVY)) == 1
    done = rows(sessions, aid)
    assert (done[ids["amira"]].status, done[ids["ivy"]].status) == ("skipped", "sent")


def test_staff_narrow_the_audience_by_channel_nation_and_postcode_area(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    cases = [
        (Audience(channels=("telegram",)), {"chloe", "hari"}),
        (Audience(nations=("scotland",)), {"ben", "hari"}),
        (Audience(postcode_areas=("eh",)), {"ben", "hari"}),
        (Audience(postcode_areas=("SW", "CF")), {"amira", "chloe"}),
        (Audience(channels=("whatsapp",), nations=("scotland",)), {"ben"}),
        (Audience(nations=("wales",), channels=("sms",)), set()),
    ]
    for audience, expected in cases:
        with sessions.begin() as session:
            draft = broadcast.create(session, cfg, "sirt", "Local news.", "staff", audience,
                                     now=clock())
            shown = broadcast.preview(session, cfg, draft, clock())
            assert sum(shown.recipients.values()) == len(expected), audience
            session.rollback()
        aid = announce(sessions, cfg, "Local news.", clock(), audience)
        assert set(statuses(sessions, aid)) == {ids[n] for n in expected}, audience
        broadcast_rows = rows(sessions, aid)
        with sessions.begin() as session:  # keep the frequency cap out of this test
            session.execute(update(Delivery).where(Delivery.announcement_id == aid)
                            .values(status="skipped", error_code="test"))
            session.execute(update(Announcement).where(Announcement.id == aid)
                            .values(status="cancelled"))
        assert all(d.status == "pending" for d in broadcast_rows.values())

    aid = announce(sessions, cfg, "Scottish news.", clock(), Audience(nations=("scotland",)))
    drive(cfg, sessions, senders, clock)
    assert [r["to"] for r in fake_twilio.requests] == [WA + BEN]
    assert [m["chat_id"] for m in fake_telegram.sent] == [int(HARI)]
    assert status_of(sessions, aid) == "sent"


def test_the_staff_test_group_gets_it_and_supporters_do_not(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    staffed = dataclasses.replace(cfg, staff=dataclasses.replace(
        cfg.staff, test_group=("sms:+447700900001", "telegram:424242")))
    aid = announce(sessions, staffed, "Draft for checking.", clock(),
                   Audience(test_group=True))
    assert len(rows(sessions, aid)) == 2
    drive(staffed, sessions, senders, clock)

    assert [r["to"] for r in fake_twilio.requests] == ["+447700900001"]
    assert [m["chat_id"] for m in fake_telegram.sent] == [424242]
    assert set(statuses(sessions, aid).values()) == {"sent"}
    assert not set(rows(sessions, aid)) & set(cast.ids.values())
    with sessions() as session:  # staff numbers are not supporters
        assert session.scalars(select(Identity.supporter_id).where(
            Identity.id.in_(list(rows(sessions, aid))))).all() == [None, None]


# Pacing, cap, cancel, pause, schedule, quiet hours ------------------------------------

def test_the_frequency_cap_skips_those_who_had_enough_this_week(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    capped = dataclasses.replace(cfg, broadcast=dataclasses.replace(
        cfg.broadcast, frequency_cap=2, frequency_days=7))
    only_sms = Audience(channels=("sms",))
    for n in (1, 2):
        announce(sessions, capped, f"Update {n}.", clock(), only_sms)
        drive(capped, sessions, senders, clock)
        clock.advance(hours=1)
    # a test-group send does not count against supporters
    staffed = dataclasses.replace(capped, staff=dataclasses.replace(
        capped.staff, test_group=("sms:+447700900001",)))
    announce(sessions, staffed, "Staff check.", clock(), Audience(test_group=True))
    drive(staffed, sessions, senders, clock)

    third = announce(sessions, capped, "Update 3.", clock(), only_sms)
    assert (rows(sessions, third)[ids["amira"]].status,
            rows(sessions, third)[ids["amira"]].error_code) == ("skipped", "frequency_cap")
    drive(capped, sessions, senders, clock)
    assert [r["body"].split("\n")[0] for r in fake_twilio.sent_to(AMIRA)] == [
        "PLANETS: Update 1.", "PLANETS: Update 2."]

    clock.advance(days=7)  # the first two are now more than a week old
    fourth = announce(sessions, capped, "Update 4.", clock(), only_sms)
    drive(capped, sessions, senders, clock)
    assert statuses(sessions, fourth) == {ids["amira"]: "sent"}
    assert len(fake_twilio.sent_to(AMIRA)) == 3


def test_sends_in_doubt_count_against_the_frequency_cap(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        twilio_settings: Settings, fake_twilio: FakeTwilio, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sends that timed out probably arrived: a third in the same week is one too many."""
    ids = cast.ids
    capped = dataclasses.replace(cfg, broadcast=dataclasses.replace(cfg.broadcast,
                                                                    frequency_cap=2))
    monkeypatch.setattr(twilio_channel, "TIMEOUT", 0.3)
    senders = {"sms": twilio_sender(twilio_settings, "sms", clock)}
    fake_twilio.hang_for(AMIRA, 10, times=2)
    for n in (1, 2):
        aid = announce(sessions, capped, f"Update {n}.", clock(), Audience(channels=("sms",)))
        drive(capped, sessions, senders, clock)
        assert statuses(sessions, aid) == {ids["amira"]: "unknown"}
    third = announce(sessions, capped, "Update 3.", clock(), Audience(channels=("sms",)))
    assert statuses(sessions, third) == {ids["amira"]: "skipped"}


def test_cancel_skips_whatever_was_not_sent(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    aid = announce(sessions, cfg, "Oops, wrong text.", clock())
    worker = make_worker(cfg, sessions, senders, clock)
    with sessions.begin() as session:
        claimed = worker.claim(session, "telegram")  # a worker already holds some rows
    assert len(claimed) == 2
    with sessions.begin() as session:
        found = session.get(Announcement, aid)
        assert found is not None
        assert broadcast.cancel(session, found, "lead@planets", clock()) == 4
    worker.send_batch("telegram", claimed)
    drive(cfg, sessions, senders, clock)

    assert fake_twilio.requests == [] and fake_telegram.sent == []
    assert {(d.status, d.error_code) for d in rows(sessions, aid).values()} == {
        ("skipped", "cancelled")}
    assert status_of(sessions, aid) == "cancelled"
    with sessions.begin() as session, pytest.raises(broadcast.BroadcastError):
        found = session.get(Announcement, aid)
        assert found is not None
        broadcast.cancel(session, found, "lead@planets", clock())


def test_pause_holds_the_rest_and_resume_sends_each_once(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    aid = announce(sessions, cfg, "Big news.", clock())
    worker = make_worker(cfg, sessions, senders, clock)
    with sessions.begin() as session:
        claimed = worker.claim(session, "telegram")
        found = session.get(Announcement, aid)
        assert found is not None
        broadcast.pause(session, found)
    worker.send_batch("telegram", claimed)   # paused meanwhile: given back, not sent
    drive(cfg, sessions, senders, clock)     # idle at once: nothing is sending
    assert fake_twilio.requests == [] and fake_telegram.sent == []
    assert set(statuses(sessions, aid).values()) == {"pending"}
    assert status_of(sessions, aid) == "paused"

    with sessions.begin() as session:
        found = session.get(Announcement, aid)
        assert found is not None
        broadcast.resume(session, found)
    drive(cfg, sessions, senders, clock)
    assert len(fake_twilio.sent) == 2 and len(fake_telegram.sent) == 2
    assert set(statuses(sessions, aid).values()) == {"sent"}
    assert status_of(sessions, aid) == "sent"


def test_a_scheduled_announcement_starts_when_due(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    due = clock() + dt.timedelta(hours=2)
    aid = announce(sessions, cfg, "Hand-in day!", clock(), at=due)
    assert status_of(sessions, aid) == "scheduled" and rows(sessions, aid) == {}

    drive(cfg, sessions, senders, clock)  # not yet due: idle, nothing sent
    assert status_of(sessions, aid) == "scheduled" and fake_twilio.requests == []

    cast.says("sms", AMIRA, "STOP")  # the audience is taken when it starts
    clock.now = due
    drive(cfg, sessions, senders, clock)
    assert status_of(sessions, aid) == "sent"
    assert set(statuses(sessions, aid)) == {ids["ben"], ids["chloe"], ids["hari"]}
    assert [r["to"] for r in fake_twilio.requests] == [WA + BEN]
    assert len(fake_telegram.sent) == 2


def test_quiet_hours_hold_sending_until_morning(
        cast: Cast, config: Config, sessions: sessionmaker[Session],
        senders: dict[str, Sender], fake_twilio: FakeTwilio, fake_telegram: FakeTelegram,
        clock: Clock) -> None:
    assert config.broadcast.quiet_hours == (dt.time(21), dt.time(8))
    today = dt.datetime.now(LONDON).date()
    clock.now = dt.datetime.combine(today, dt.time(22), LONDON).astimezone(dt.UTC)
    aid = announce(sessions, config, "Evening news.", clock(),
                   Audience(channels=("sms", "telegram")))
    assert len(rows(sessions, aid)) == 3  # queued at once ...

    worker = make_worker(config, sessions, senders, clock)
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10  # every channel has looked at the clock once
        while set(worker._busy) != set(senders) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(worker._busy) == set(senders)
        assert thread.is_alive()  # ... but held, and the worker keeps waiting
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert fake_twilio.requests == [] and fake_telegram.sent == []
    assert set(statuses(sessions, aid).values()) == {"pending"}

    clock.now = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(8),
                                    LONDON).astimezone(dt.UTC)
    drive(config, sessions, senders, clock)
    assert set(statuses(sessions, aid).values()) == {"sent"}
    assert len(fake_twilio.sent) == 1 and len(fake_telegram.sent) == 2


@pytest.mark.parametrize(("local", "quiet"), [
    ((2026, 1, 15, 20, 59, 59), False), ((2026, 1, 15, 21, 0, 0), True),
    ((2026, 1, 15, 23, 59, 59), True), ((2026, 1, 16, 0, 0, 0), True),
    ((2026, 1, 16, 7, 59, 59), True), ((2026, 1, 16, 8, 0, 0), False),
    ((2026, 7, 1, 21, 0, 0), True), ((2026, 7, 1, 7, 59, 0), True),
    ((2026, 7, 1, 12, 0, 0), False),
])
def test_quiet_hours_boundaries_in_london_time(config: Config, local: tuple[int, ...],
                                              quiet: bool) -> None:
    when = dt.datetime(*local, tzinfo=LONDON).astimezone(dt.UTC)
    assert in_quiet_hours(when, config) is quiet


def test_quiet_hours_follow_summer_time_and_can_be_off(config: Config) -> None:
    # 20:30 UTC is 21:30 in a London summer (quiet) but 20:30 in winter (not quiet)
    assert in_quiet_hours(dt.datetime(2026, 7, 1, 20, 30, tzinfo=dt.UTC), config)
    assert not in_quiet_hours(dt.datetime(2026, 1, 15, 20, 30, tzinfo=dt.UTC), config)
    off = dataclasses.replace(config, broadcast=dataclasses.replace(config.broadcast,
                                                                    quiet_hours=None))
    assert not in_quiet_hours(dt.datetime(2026, 1, 15, 23, 0, tzinfo=dt.UTC), off)
    daytime = dataclasses.replace(config, broadcast=dataclasses.replace(
        config.broadcast, quiet_hours=(dt.time(9), dt.time(17))))
    for hour, expected in ((8, False), (9, True), (16, True), (17, False)):
        when = dt.datetime(2026, 1, 15, hour, tzinfo=LONDON)
        assert in_quiet_hours(when, daytime) is expected, hour


# Twilio's answers ------------------------------------------------------------------------

def test_twilio_429_is_retried_later_then_sent(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, clock: Clock) -> None:
    ids = cast.ids
    fake_twilio.error_for(AMIRA, 429, 20429)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    worker = make_worker(cfg, sessions, senders, clock)
    step(worker, sessions, "sms")
    waiting = rows(sessions, aid)[ids["amira"]]
    assert (waiting.status, waiting.attempts, waiting.error_code) == ("pending", 1, "20429")
    assert waiting.next_attempt_at is not None and waiting.next_attempt_at > clock()

    drive(cfg, sessions, senders, clock)
    assert [r["status"] for r in fake_twilio.requests_to(AMIRA)] == [429, 201]
    sent = rows(sessions, aid)[ids["amira"]]
    assert (sent.status, sent.attempts, sent.error_code) == ("sent", 2, None)
    assert sent.provider_id == fake_twilio.sent_to(AMIRA)[0]["sid"]


def test_twilio_21610_means_opted_out_and_never_again(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, clock: Clock) -> None:
    ids = cast.ids
    cast.signs("ivy", "sms", IVY, "Ivy Green", "LS1 1UR")
    fake_twilio.error_for(AMIRA, 400, 21610)  # she texted STOP to Twilio, not to us
    first = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    second = announce(sessions, cfg, "More news.", clock(), Audience(channels=("sms",)))
    drive(cfg, sessions, senders, clock)

    assert len(fake_twilio.requests_to(AMIRA)) == 1  # the refusal; the second is skipped
    refused = rows(sessions, first)[ids["amira"]]
    assert (refused.status, refused.error_code, refused.attempts) == ("failed", "21610", 1)
    assert (rows(sessions, second)[ids["amira"]].status,
            rows(sessions, second)[ids["amira"]].error_code) == ("skipped", "opted_out")
    assert identity(sessions, ids["amira"]).opted_out_at is not None
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscription).where(
            Subscription.identity_id == ids["amira"])) == 0
    assert len(fake_twilio.sent_to(IVY)) == 2

    third = announce(sessions, cfg, "Even more.", clock(), Audience(channels=("sms",)))
    assert ids["amira"] not in rows(sessions, third)
    drive(cfg, sessions, senders, clock)
    assert len(fake_twilio.requests_to(AMIRA)) == 1


def test_whatsapp_63016_falls_back_to_the_template(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, clock: Clock) -> None:
    ids = cast.ids
    fake_twilio.error_for(WA + BEN, 400, 63016)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("whatsapp",)),
                   content_sid=TEMPLATE, variables={"1": "50,000"})
    drive(cfg, sessions, senders, clock)

    free_form, template = fake_twilio.requests_to(WA + BEN)
    assert (free_form["status"], free_form["error"], free_form["content_sid"]) == (
        400, 63016, None)
    assert (template["status"], template["content_sid"], template["body"]) == (
        201, TEMPLATE, None)
    assert json.loads(template["content_variables"]) == {"1": "50,000"}
    done = rows(sessions, aid)[ids["ben"]]
    assert (done.status, done.used_template, done.provider_id) == (
        "sent", True, template["sid"])


def test_whatsapp_63016_without_a_template_is_skipped(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, clock: Clock) -> None:
    ids = cast.ids
    fake_twilio.error_for(WA + BEN, 400, 63016)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("whatsapp",)))
    drive(cfg, sessions, senders, clock)
    assert [r["status"] for r in fake_twilio.requests_to(WA + BEN)] == [400]
    done = rows(sessions, aid)[ids["ben"]]
    assert (done.status, done.error_code, done.used_template) == ("skipped", "63016", False)
    assert identity(sessions, ids["ben"]).opted_out_at is None  # not an opt-out


@pytest.mark.parametrize("template", [True, False])
def test_whatsapp_outside_the_24_hour_window_gets_the_template_or_nothing(
        people: Cast, cfg: Config, sessions: sessionmaker[Session],
        senders: dict[str, Sender], fake_twilio: FakeTwilio, clock: Clock,
        template: bool) -> None:
    people.service.clock = lambda: clock() - dt.timedelta(hours=25)  # Ben wrote yesterday
    ben = people.signs("ben", "whatsapp", BEN, "Ben Ross", "EH1 1YZ")
    people.service.clock = lambda: clock() - dt.timedelta(hours=23)  # Ola wrote today
    ola = people.signs("ola", "whatsapp", "+447700900111", "Ola Nowak", "EH2 2AA")
    extra: dict[str, Any] = {"content_sid": TEMPLATE, "variables": {"1": "Ben"}} if (
        template) else {}
    with sessions.begin() as session:
        draft = broadcast.create(session, cfg, "sirt", "News.", "staff", now=clock(), **extra)
        shown = broadcast.preview(session, cfg, draft, clock())
    assert shown.whatsapp_outside_window == 1 and shown.whatsapp_template is template
    assert any(("get the template" if template else "be skipped") in line
               for line in shown.lines())
    aid = announce(sessions, cfg, "News.", clock(), **extra)
    drive(cfg, sessions, senders, clock)

    ben_requests = fake_twilio.requests_to(WA + BEN)
    if template:  # one request, the template; never a free-form attempt
        assert [(r["content_sid"], r["body"]) for r in ben_requests] == [(TEMPLATE, None)]
        assert (rows(sessions, aid)[ben].status, rows(sessions, aid)[ben].used_template) == (
            "sent", True)
    else:
        assert ben_requests == []
        assert (rows(sessions, aid)[ben].status, rows(sessions, aid)[ben].error_code) == (
            "skipped", "63016")
    [ola_request] = fake_twilio.requests_to(WA + "+447700900111")
    assert ola_request["body"] and ola_request["content_sid"] is None  # inside: free-form
    assert rows(sessions, aid)[ola].status == "sent"


def test_other_twilio_4xx_fails_with_its_code_and_is_not_retried(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, clock: Clock) -> None:
    ids = cast.ids
    fake_twilio.error_for(AMIRA, 400, 21408)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    drive(cfg, sessions, senders, clock)
    failed = rows(sessions, aid)[ids["amira"]]
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", "21408", 1)
    assert len(fake_twilio.requests_to(AMIRA)) == 1
    assert identity(sessions, ids["amira"]).opted_out_at is None
    assert status_of(sessions, aid) == "sent"


def test_twilio_5xx_is_retried_with_backoff_then_sent(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, clock: Clock) -> None:
    ids = cast.ids
    fake_twilio.error_for(AMIRA, 500, 20500, times=2)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    worker = make_worker(cfg, sessions, senders, clock)
    waits = []
    for _ in range(2):
        assert step(worker, sessions, "sms")
        row = rows(sessions, aid)[ids["amira"]]
        assert row.status == "pending" and row.next_attempt_at is not None
        assert row.next_attempt_at > clock()
        waits.append(row.next_attempt_at - clock())
        assert step(worker, sessions, "sms") == []  # not before its time
        clock.now = row.next_attempt_at
    step(worker, sessions, "sms")
    done = rows(sessions, aid)[ids["amira"]]
    assert (done.status, done.attempts) == ("sent", 3)
    assert [r["status"] for r in fake_twilio.requests_to(AMIRA)] == [500, 500, 201]
    assert all(w > dt.timedelta(0) for w in waits)


def test_twilio_5xx_fails_after_max_attempts(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, clock: Clock) -> None:
    ids = cast.ids
    fake_twilio.error_for(AMIRA, 503, 20503, times=100)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    drive(cfg, sessions, senders, clock)
    failed = rows(sessions, aid)[ids["amira"]]
    assert (failed.status, failed.error_code, failed.attempts) == (
        "failed", "20503", cfg.broadcast.max_attempts)
    assert len(fake_twilio.requests_to(AMIRA)) == cfg.broadcast.max_attempts
    assert status_of(sessions, aid) == "sent"


def test_a_read_timeout_is_unknown_and_never_resent(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], twilio_settings: Settings,
        fake_twilio: FakeTwilio, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = cast.ids
    monkeypatch.setattr(twilio_channel, "TIMEOUT", 0.3)
    senders: dict[str, Sender] = {"sms": twilio_sender(twilio_settings, "sms", clock)}
    fake_twilio.hang_for(AMIRA, 10)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    drive(cfg, sessions, senders, clock)
    doubt = rows(sessions, aid)[ids["amira"]]
    assert (doubt.status, doubt.error_code, doubt.attempts) == ("unknown", "ReadTimeout", 1)
    assert len(fake_twilio.sent_to(AMIRA)) == 1  # Twilio did get it
    drive(cfg, sessions, senders, clock)
    assert len(fake_twilio.requests_to(AMIRA)) == 1
    assert status_of(sessions, aid) == "sent"


def test_no_connection_to_twilio_is_retried_not_unknown(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], settings: Settings,
        clock: Clock) -> None:
    ids = cast.ids
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    nowhere = dataclasses.replace(settings, twilio_api_base_url=f"http://127.0.0.1:{closed}")
    senders: dict[str, Sender] = {"sms": twilio_sender(nowhere, "sms", clock)}
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    step(make_worker(cfg, sessions, senders, clock), sessions, "sms")
    row = rows(sessions, aid)[ids["amira"]]
    assert (row.status, row.error_code, row.attempts) == ("pending", "connection", 1)
    drive(cfg, sessions, senders, clock)
    row = rows(sessions, aid)[ids["amira"]]
    assert (row.status, row.attempts) == ("failed", cfg.broadcast.max_attempts)


def test_a_garbled_twilio_answer_does_not_wedge_the_worker(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], settings: Settings,
        clock: Clock) -> None:
    """A proxy answering 200 with HTML: the send's fate is unknown; the worker goes on."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hits.append(self.path)
            page = b"<html>Service temporarily unavailable</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        garbled = dataclasses.replace(
            settings, twilio_api_base_url=f"http://127.0.0.1:{server.server_address[1]}")
        senders: dict[str, Sender] = {"sms": twilio_sender(garbled, "sms", clock)}
        aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
        drive(cfg, sessions, senders, clock, timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    doubt = rows(sessions, aid)[cast.ids["amira"]]
    assert (doubt.status, doubt.error_code) == ("unknown", "JSONDecodeError")
    assert len(hits) == 1


# Telegram's answers ----------------------------------------------------------------------

def test_telegram_forbidden_marks_the_chat_unreachable(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    fake_telegram.block(int(CHLOE))
    first = announce(sessions, cfg, "News.", clock(), Audience(channels=("telegram",)))
    second = announce(sessions, cfg, "More.", clock(), Audience(channels=("telegram",)))
    drive(cfg, sessions, senders, clock)

    refused = rows(sessions, first)[ids["chloe"]]
    assert (refused.status, refused.error_code) == ("failed", "403")
    assert rows(sessions, second)[ids["chloe"]].status == "skipped"
    assert identity(sessions, ids["chloe"]).unreachable_at is not None
    assert len([c for c in fake_telegram.calls_to("sendMessage")
                if c["params"]["chat_id"] == int(CHLOE)]) == 1
    assert len(fake_telegram.messages_to(int(HARI))) == 2
    third = announce(sessions, cfg, "Even more.", clock(), Audience(channels=("telegram",)))
    assert ids["chloe"] not in rows(sessions, third)


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # PTB's own
def test_telegram_retry_after_is_waited_out_then_sent(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    fake_telegram.rate_limit(int(CHLOE), retry_after=1)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("telegram",)))
    worker = make_worker(cfg, sessions, senders, clock)
    step(worker, sessions, "telegram")
    waiting = rows(sessions, aid)[ids["chloe"]]
    assert (waiting.status, waiting.error_code) == ("pending", "429")
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at >= clock() + dt.timedelta(seconds=1)

    drive(cfg, sessions, senders, clock)
    assert [c["status"] for c in fake_telegram.calls_to("sendMessage")
            if c["params"]["chat_id"] == int(CHLOE)] == [429, 200]
    assert len(fake_telegram.messages_to(int(CHLOE))) == 1
    assert (rows(sessions, aid)[ids["chloe"]].status,
            rows(sessions, aid)[ids["chloe"]].attempts) == ("sent", 2)


def test_telegram_chat_migrated_moves_the_address_and_sends(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_telegram: FakeTelegram, clock: Clock) -> None:
    ids = cast.ids
    fake_telegram.migrate(int(CHLOE), -1005550001)
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("telegram",)))
    drive(cfg, sessions, senders, clock)
    assert identity(sessions, ids["chloe"]).address == "-1005550001"
    assert len(fake_telegram.messages_to(-1005550001)) == 1
    assert fake_telegram.messages_to(int(CHLOE)) == []
    assert rows(sessions, aid)[ids["chloe"]].status == "sent"


# Delivery reports ------------------------------------------------------------------------

def test_status_callbacks_move_forward_only(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, client: FlaskClient, clock: Clock) -> None:
    ids = cast.ids
    cast.signs("ivy", "sms", IVY, "Ivy Green", "LS1 1UR")
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms", "whatsapp")))
    drive(cfg, sessions, senders, clock)
    sid = {r["to"]: r["sid"] for r in fake_twilio.sent}
    assert {r["status_callback"].split("?d=")[0] for r in fake_twilio.sent} == {
        PUBLIC_URL + STATUS_PATH}

    def now() -> dict[str, tuple[str, str | None]]:
        return {name: (rows(sessions, aid)[ids[name]].status,
                       rows(sessions, aid)[ids[name]].error_code)
                for name in ("amira", "ben", "ivy")}

    # Amira: sent -> delivered; a late "sent" or "undelivered" changes nothing.
    for status, expected in (("queued", "sent"), ("sent", "sent"), ("delivered", "delivered"),
                             ("sent", "delivered"), ("undelivered", "delivered")):
        assert post_status(client, twilio_status(sid[AMIRA], status, AMIRA)) == 204
        assert now()["amira"][0] == expected, status
    # Ivy: undelivered with Twilio's code; a late "delivered" does not revive it.
    assert post_status(client, twilio_status(sid[IVY], "undelivered", IVY,
                                             error_code="30003")) == 204
    assert now()["ivy"] == ("failed", "30003")
    for status in ("delivered", "sent"):
        assert post_status(client, twilio_status(sid[IVY], status, IVY)) == 204
    assert now()["ivy"] == ("failed", "30003")
    # Ben (WhatsApp): read counts as delivered.
    assert post_status(client, twilio_status(sid[WA + BEN], "read", WA + BEN,
                                             "whatsapp:+447700900000")) == 204
    assert now()["ben"][0] == "delivered"

    before = now()
    forged = twilio_status(sid[AMIRA], "failed", AMIRA, error_code="30008")
    assert post_status(client, forged, signature="bm90IGEgc2lnbmF0dXJl") == 403
    assert post_status(client, forged, signature="") == 403
    resigned = sign(twilio_status(sid[AMIRA], "delivered", AMIRA), url=PUBLIC_URL + STATUS_PATH)
    assert post_status(client, forged, signature=resigned) == 403  # another form's signature
    assert post_status(client, twilio_status("SM" + "f" * 32, "delivered", AMIRA)) == 204
    malformed = {k: v for k, v in twilio_status(sid[IVY], "sent", IVY).items()
                 if k != "MessageStatus"}
    assert post_status(client, malformed) == 400
    assert now() == before


def test_a_delivery_report_that_beats_the_worker_is_not_lost(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, client: FlaskClient, clock: Clock) -> None:
    ids = cast.ids
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    worker = make_worker(cfg, sessions, senders, clock)
    with sessions.begin() as session:
        [job] = worker.claim(session, "sms")
    with sessions.begin() as session:
        assert worker.begin_send(session, job)
    result = senders["sms"].send(job)   # Twilio has it ...
    assert result.provider_id is not None
    # ... and reports delivery, to the callback URL the send named, while the worker waits
    # for the pacer before recording it
    callback = fake_twilio.requests[-1]["status_callback"]
    assert callback == f"{PUBLIC_URL}{STATUS_PATH}?d={job.delivery_id}"
    assert post_status(client, twilio_status(result.provider_id, "delivered", AMIRA),
                       url=callback) == 204
    with sessions.begin() as session:
        worker.record(session, job, result)
    row = rows(sessions, aid)[ids["amira"]]
    assert (row.status, row.provider_id) == ("delivered", result.provider_id)


def test_a_delivery_report_settles_a_send_that_was_in_doubt(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, client: FlaskClient, clock: Clock) -> None:
    aid = announce(sessions, cfg, "News.", clock(), Audience(channels=("sms",)))
    worker = make_worker(cfg, sessions, senders, clock)
    with sessions.begin() as session:
        [job] = worker.claim(session, "sms")
    with sessions.begin() as session:
        assert worker.begin_send(session, job)
    result = senders["sms"].send(job)
    with sessions.begin() as session:  # the worker died before recording: in doubt
        session.execute(update(Delivery).where(Delivery.id == job.delivery_id)
                        .values(status="unknown"))
    callback = fake_twilio.requests[-1]["status_callback"]
    assert post_status(client, twilio_status(str(result.provider_id), "delivered", AMIRA),
                       url=callback) == 204
    assert rows(sessions, aid)[cast.ids["amira"]].status == "delivered"


# Milestones ------------------------------------------------------------------------------

def total(sessions: sessionmaker[Session], cfg: Config) -> int:
    with sessions() as session:
        here = session.scalar(select(Petition.signature_count).where(Petition.slug == "sirt"))
    return int(here or 0) + sum(e.count for e in cfg.petition("sirt").external)


def milestone_drafts(sessions: sessionmaker[Session]) -> list[tuple[int | None, str, str]]:
    with sessions() as session:
        return [(a.milestone, a.status, a.text) for a in session.scalars(
            select(Announcement).where(Announcement.milestone.is_not(None))
            .order_by(Announcement.id))]


def test_crossing_a_milestone_drafts_one_announcement_once(
        cfg: Config, sessions: sessionmaker[Session]) -> None:
    petition = cfg.petition("sirt")
    assert petition.external[0].count == 49_257
    nearer = dataclasses.replace(cfg, petitions=(dataclasses.replace(
        petition, milestones=(49_259, 50_000)), *cfg.petitions[1:]))
    people = Cast(Service(nearer, sessions), sessions, {})
    people.service.sync_petitions()

    people.signs("amira", "sms", AMIRA, "Amira Khan", "SW1A 1AA")
    assert total(sessions, nearer) == 49_258 and milestone_drafts(sessions) == []
    people.signs("ben", "whatsapp", BEN, "Ben Ross", "EH1 1YZ")  # the 49,259th
    assert total(sessions, nearer) == 49_259
    [(milestone, status, text)] = milestone_drafts(sessions)
    assert (milestone, status) == (49_259, "draft") and "49,259" in text
    people.signs("chloe", "telegram", CHLOE, "Chloe Evans", "CF10 1EP")
    people.says("whatsapp", BEN, "DELETE")  # back below it ...
    people.says("whatsapp", BEN, "YES")
    people.says("telegram", CHLOE, "DELETE")
    people.says("telegram", CHLOE, "YES")
    assert total(sessions, nearer) == 49_258
    people.signs("hari", "telegram", HARI, "Hari Patel", "EH3 9AA")  # ... and across again
    assert total(sessions, nearer) == 49_259
    assert [m for m, _, _ in milestone_drafts(sessions)] == [49_259]
    with sessions() as session:  # a draft for staff: nothing queued
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_the_shipped_50000_milestone_counts_the_change_org_signatures(
        cfg: Config, sessions: sessionmaker[Session]) -> None:
    people = Cast(Service(cfg, sessions), sessions, {})
    people.service.sync_petitions()
    with sessions.begin() as session:  # 742 signed here already: 49,999 in all
        session.execute(update(Petition).where(Petition.slug == "sirt")
                        .values(signature_count=742, last_number=742))
    assert total(sessions, cfg) == 49_999
    people.signs("amira", "sms", AMIRA, "Amira Khan", "SW1A 1AA")
    [(milestone, status, text)] = milestone_drafts(sessions)
    assert (milestone, status) == (50_000, "draft") and "50,000" in text
    people.signs("ben", "whatsapp", BEN, "Ben Ross", "EH1 1YZ")
    assert len(milestone_drafts(sessions)) == 1


# The command line ------------------------------------------------------------------------

@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "PETITIONBOT_CONFIG": str(CONFIG),
            "USER": "lead", "TWILIO_ACCOUNT_SID": "", "TELEGRAM_BOT_TOKEN": "",
            "REDIS_URL": ""}


def test_announce_prints_a_preview_and_saves_a_draft(
        cast: Cast, sessions: sessionmaker[Session], cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["announce", "--petition", "sirt", "--text",
                                      "We’re nearly there – thank you 🎉"], env=cli_env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Recipients: 4 (sms 1, telegram 2, whatsapp 1)" in out
    sms = out.split("--- sms ---\n", 1)[1].split("\n---", 1)[0]
    assert "We're nearly there - thank you" in sms and is_gsm7(sms)
    assert "Reply STOP" in sms and "PLANETS" in sms
    assert "SMS: 1 segment(s), GSM-7; replaced ’ – 🎉 with plain characters" in out
    assert "Draft 1 saved" in out
    assert status_of(sessions, 1) == "draft" and rows(sessions, 1) == {}


def test_announce_send_queues_it_for_the_workers(
        cast: Cast, cfg: Config, sessions: sessionmaker[Session], senders: dict[str, Sender],
        fake_twilio: FakeTwilio, fake_telegram: FakeTelegram, clock: Clock,
        cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["announce", "--petition", "sirt", "--text", "Hand-in "
                                      "on Friday.", "--channel", "telegram", "--send"],
                                env=cli_env)
    assert result.exit_code == 0, result.output
    assert "Recipients: 2 (telegram 2)" in result.output
    assert "queued for 2 recipient(s)" in result.output
    assert set(statuses(sessions, 1).values()) == {"pending"}
    assert fake_telegram.sent == []
    drive(cfg, sessions, senders, clock)
    assert sorted(m["chat_id"] for m in fake_telegram.sent) == [int(CHLOE), int(HARI)]
    assert fake_twilio.requests == []
    assert status_of(sessions, 1) == "sent"


def test_announcement_commands_approve_pause_resume_and_cancel(
        cast: Cast, sessions: sessionmaker[Session], cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["announce", "--petition", "sirt", "--text", "Hi"],
                         env=cli_env).exit_code == 0
    for action, status in (("approve", "sending"), ("pause", "paused"),
                           ("resume", "sending"), ("cancel", "cancelled")):
        result = runner.invoke(cli, ["announcement", action, "1"], env=cli_env)
        assert result.exit_code == 0, result.output
        assert f"Announcement 1 is now {status}." in result.output
    assert {d.status for d in rows(sessions, 1).values()} == {"skipped"}
    again = runner.invoke(cli, ["announcement", "cancel", "1"], env=cli_env)
    assert again.exit_code != 0 and "already cancelled" in again.output
    unknown = runner.invoke(cli, ["announce", "--petition", "nope", "--text", "Hi"],
                            env=cli_env)
    assert unknown.exit_code != 0 and "no petition" in unknown.output
    later = runner.invoke(cli, ["announce", "--petition", "sirt", "--text", "Hand-in day",
                                "--schedule", "2099-07-01 10:00"], env=cli_env)
    assert later.exit_code == 0, later.output
    assert "scheduled for 2099-07-01 10:00 (Europe/London)" in later.output
    with sessions() as session:
        scheduled = session.scalars(select(Announcement).where(
            Announcement.status == "scheduled")).one()
        assert scheduled.scheduled_at == dt.datetime(2099, 7, 1, 9, 0, tzinfo=dt.UTC)  # BST
    assert rows(sessions, scheduled.id) == {}
