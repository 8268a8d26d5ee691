"""Events recorded as things happen (issue #16; DESIGN §9): each in the transaction that
made it, with one delivery per receiver that asked for its type, and nothing at all when
none did. Delivery (the worker posting them) is tested elsewhere; here the rows are read.

Supporters are made through the real inbound path (Service.receive); a receiver is a row
inserted directly into event_receivers, asking for the types each test needs.

The cast: Amira signs by SMS, wants updates, asks a question and later erases herself;
Ben signs by SMS and on Telegram, then shares his number there (his two records become
one); Cara signs and says STOP; Dev's updates end because the provider says he opted out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Text, cast, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.twilio.outbound import TwilioSender
from bot.core.conversation import Channel
from bot.entry.worker import BroadcastWorker
from bot.infra.clock import utcnow
from bot.infra.config import Config
from bot.infra.pacing import LocalPacer
from bot.infra.settings import Settings
from bot.shell import broadcast, events, retention, signature_feed, supporters
from bot.shell.broadcast import Audience
from bot.shell.service import Received, Service
from bot.shell.simulator import Sandbox
from models import (
    AuditEntry,
    Event,
    EventDelivery,
    Identity,
    InboxMessage,
    Petition,
    Receiver,
    Signature,
    Subscription,
    Supporter,
)
from models.db import is_postgres
from tests.fakes.twilio_api import FakeTwilio
from tests.integration.writer_lock import deleted_per_transaction

AMIRA = "+447700900123"   # SMS
BEN = "+447700900456"     # SMS, then Telegram
BEN_TELEGRAM = "5550002"
CARA = "+447700900789"    # SMS, says STOP
DEV = "+447700900321"     # SMS, opted out at the provider
QUESTION = "Can I bring my mum to the hand-in? She had the treatment last year."
EVERY_TYPE = events.TYPES


# Fixtures -------------------------------------------------------------------------------

@pytest.fixture
def cfg(config: Config) -> Config:
    """Two open petitions (SIRT and OTHER), quiet hours off."""
    sirt = config.petition("sirt")
    other = dataclasses.replace(sirt, slug="other", code="OTHER", title="Another petition",
                                closed=None, milestones=(), external=())
    return dataclasses.replace(
        config, petitions=(sirt, other),
        broadcast=dataclasses.replace(config.broadcast, quiet_hours=None))


@dataclass
class Cast:
    service: Service
    sessions: sessionmaker[Session]
    counter: Iterator[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def says(self, channel: str, address: str, *texts: str) -> list[str]:
        said: list[str] = []
        for text in texts:
            provider_id = (str(next(self.counter)) if channel == Channel.TELEGRAM
                           else "SM" + secrets.token_hex(16))
            phone = "" if channel == Channel.TELEGRAM else address
            handled = self.service.receive(Received(Channel(channel), address, text,
                                                    provider_id, phone=phone))
            said.extend(m.text for m in handled.replies)
        return said

    def signs(self, channel: str, address: str, name: str, postcode: str,
              updates: str = "YES") -> None:
        self.says(channel, address, "Hi", "SIGN", "YES", name, postcode, "YES", updates)

    def signs_other(self, channel: str, address: str, name: str, postcode: str) -> None:
        self.says(channel, address, "SIGN OTHER", "SIGN", "YES", name, postcode, "YES", "YES")

    def supporter(self, channel: str, address: str) -> int:
        with self.sessions() as session:
            found = session.scalar(select(Identity.supporter_id).where(
                Identity.channel == channel, Identity.address == address))
        assert found is not None
        return int(found)


@pytest.fixture
def people(cfg: Config, sessions: sessionmaker[Session]) -> Cast:
    service = Service(cfg, sessions)
    service.sync_petitions()
    return Cast(service, sessions)


def add_receiver(sessions: sessionmaker[Session], *types: str) -> int:
    """A receiver, as POST /api/v1/webhooks would make it, asking for `types`."""
    with sessions.begin() as session:
        receiver = Receiver(url="http://127.0.0.1:9/events", secret=events.new_secret(),
                            events=list(types), created_by="ada@planets.example",
                            created_at=utcnow())
        session.add(receiver)
        session.flush()
        return receiver.id


def recorded(sessions: sessionmaker[Session], supporter_id: int | None = None,
             ) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every event (or one supporter's), in the order they were made."""
    query = select(Event.type, Event.data).order_by(Event.id)
    if supporter_id is not None:
        query = query.where(Event.supporter_id == supporter_id)
    with sessions() as session:
        return [(type_, data) for type_, data in session.execute(query).all()]


def types_of(sessions: sessionmaker[Session], supporter_id: int | None = None) -> list[str]:
    return [type_ for type_, _ in recorded(sessions, supporter_id)]


def delivered_to(sessions: sessionmaker[Session], receiver_id: int) -> list[str]:
    """The types of the events queued for one receiver, in order."""
    with sessions() as session:
        return list(session.scalars(
            select(Event.type).join(EventDelivery, EventDelivery.event_id == Event.id)
            .where(EventDelivery.receiver_id == receiver_id).order_by(Event.id)))


def rows_holding(engine: Engine, needle: str) -> int:
    """How many events rows hold `needle` anywhere (their JSON read as text)."""
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(Event).where(
            cast(Event.data, Text).contains(needle))) or 0)


def subscription_changes(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    return [data for type_, data in recorded(sessions) if type_ == events.SUBSCRIPTION_CHANGED]


# Signing --------------------------------------------------------------------------------

def test_amira_signs_and_the_event_carries_the_feeds_fields(
        people: Cast, sessions: sessionmaker[Session], engine: Engine) -> None:
    receiver = add_receiver(sessions, events.SIGNATURE_CREATED)
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    amira = people.supporter("sms", AMIRA)

    [(type_, data)] = recorded(sessions)
    assert type_ == events.SIGNATURE_CREATED
    with sessions() as session:
        row = session.scalars(select(Signature).where(Signature.supporter_id == amira)).one()
        petition_id = session.scalar(select(Petition.id).where(Petition.slug == "sirt"))
        event = session.scalars(select(Event)).one()
        delivery = session.scalars(select(EventDelivery)).one()
    assert data == events.signature_data("sirt", row)
    assert (data["name"], data["postcode"], data["channel"], data["supporter"]) == (
        "Amira Khan", "SW1A 1AA", "sms", amira)
    assert data["signed_at"] == events.when(row.signed_at)
    assert event.supporter_id == amira and event.public_id.startswith("evt_")
    assert (delivery.receiver_id, delivery.status, delivery.supporter_id) == (
        receiver, "pending", amira)

    with engine.connect() as connection:
        page = signature_feed.Page(connection, "sirt", petition_id, 0, 10)
        [[item]] = list(page)
    for field in signature_feed.FIELDS:
        expected = events.when(row.signed_at) if field == "signed_at" else item[field]
        assert data[field] == expected, field


def test_without_a_receiver_nothing_is_recorded(people: Cast,
                                               sessions: sessionmaker[Session]) -> None:
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION, "STOP", "START", "DELETE", "YES")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
        assert session.scalar(select(func.count()).select_from(EventDelivery)) == 0


def test_a_receiver_hears_only_the_types_it_asked_for(
        people: Cast, sessions: sessionmaker[Session]) -> None:
    crm = add_receiver(sessions, *EVERY_TYPE)
    helpdesk = add_receiver(sessions, events.CONVERSATION_MESSAGE)
    mailer = add_receiver(sessions, events.SUBSCRIPTION_CHANGED)
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION, "STOP")

    everything = [events.SIGNATURE_CREATED, events.SUBSCRIPTION_CHANGED,
                  events.CONVERSATION_MESSAGE, events.SUBSCRIPTION_CHANGED]
    assert types_of(sessions) == everything
    assert delivered_to(sessions, crm) == everything
    assert delivered_to(sessions, helpdesk) == [events.CONVERSATION_MESSAGE]
    assert delivered_to(sessions, mailer) == [events.SUBSCRIPTION_CHANGED] * 2


# Subscriptions --------------------------------------------------------------------------

def test_opting_in_then_stop_is_heard_once_each(people: Cast,
                                                sessions: sessionmaker[Session]) -> None:
    add_receiver(sessions, events.SUBSCRIPTION_CHANGED)
    people.signs("sms", CARA, "Cara Lindqvist", "CF10 1AA")
    cara = people.supporter("sms", CARA)
    assert subscription_changes(sessions) == [
        {"supporter": cara, "petition": "sirt", "channel": "sms", "subscribed": True,
         "reason": "opted_in"}]

    people.signs_other("sms", CARA, "Cara Lindqvist", "CF10 1AA")
    people.says("sms", CARA, "STOP")
    assert subscription_changes(sessions)[1:] == [
        {"supporter": cara, "petition": "other", "channel": "sms", "subscribed": True,
         "reason": "opted_in"},
        {"supporter": cara, "petition": "sirt", "channel": "sms", "subscribed": False,
         "reason": "stop"},
        {"supporter": cara, "petition": "other", "channel": "sms", "subscribed": False,
         "reason": "stop"}]

    people.says("sms", CARA, "START", "STOP")  # nothing left to end: nothing to tell
    assert len(subscription_changes(sessions)) == 4


def test_saying_no_to_updates_changes_no_subscription(people: Cast,
                                                       sessions: sessionmaker[Session]) -> None:
    add_receiver(sessions, events.SUBSCRIPTION_CHANGED)
    people.signs("sms", CARA, "Cara Lindqvist", "CF10 1AA", updates="NO")
    people.says("sms", CARA, "STOP")
    assert subscription_changes(sessions) == []


def test_the_providers_opt_out_ends_devs_updates(
        people: Cast, cfg: Config, sessions: sessionmaker[Session],
        settings: Settings) -> None:
    add_receiver(sessions, events.SUBSCRIPTION_CHANGED)
    people.signs("sms", DEV, "Dev Malik", "BT1 1AA")
    dev = people.supporter("sms", DEV)
    with FakeTwilio() as fake_twilio:
        fake_twilio.error_for(DEV, 400, 21610)  # he texted STOP to Twilio, not to us
        sender = TwilioSender(dataclasses.replace(
            settings, twilio_api_base_url=fake_twilio.base_url), "sms", utcnow)
        worker = BroadcastWorker(cfg, sessions, {"sms": sender}, LocalPacer({}),
                                 stale_after=3600)
        with sessions.begin() as session:
            announcement = broadcast.create(session, cfg, "sirt", "News.", "staff@planets",
                                            Audience(channels=("sms",)), now=utcnow())
            broadcast.approve(session, cfg, announcement, "lead@planets", utcnow())
        with sessions.begin() as session:
            jobs = worker.claim(session, "sms")
        worker.send_batch("sms", jobs)
        assert len(fake_twilio.requests_to(DEV)) == 1

    assert subscription_changes(sessions)[1:] == [
        {"supporter": dev, "petition": "sirt", "channel": "sms", "subscribed": False,
         "reason": "provider_opt_out"}]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0


# A message for a person ----------------------------------------------------------------

def test_amiras_question_is_heard_as_the_conversations_api_shows_it(
        people: Cast, sessions: sessionmaker[Session]) -> None:
    add_receiver(sessions, events.CONVERSATION_MESSAGE)
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION)
    amira = people.supporter("sms", AMIRA)

    [(type_, data)] = recorded(sessions)
    with sessions() as session:
        message = session.scalars(select(InboxMessage).where(InboxMessage.kind == "in")).one()
    assert type_ == events.CONVERSATION_MESSAGE
    assert data == {"conversation": message.conversation_id, "supporter": amira,
                    "channel": "sms", "flagged": False,
                    "message": {"id": message.id, "direction": "in", "text": QUESTION,
                                "at": events.when(message.at)}}


# Erasure --------------------------------------------------------------------------------

def test_amira_erases_herself_and_her_events_keep_only_ids(
        people: Cast, sessions: sessionmaker[Session], engine: Engine) -> None:
    add_receiver(sessions, *EVERY_TYPE)
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.says("sms", AMIRA, QUESTION)
    people.signs_other("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    amira = people.supporter("sms", AMIRA)
    with sessions() as session:
        signed = session.execute(select(Petition.slug, Signature.id, Signature.number)
                                 .join(Petition, Petition.id == Signature.petition_id)
                                 .order_by(Signature.id)).all()
    before = recorded(sessions, amira)
    assert [t for t, _ in before] == [
        events.SIGNATURE_CREATED, events.SUBSCRIPTION_CHANGED, events.CONVERSATION_MESSAGE,
        events.SIGNATURE_CREATED, events.SUBSCRIPTION_CHANGED]
    assert rows_holding(engine, "Amira Khan") == 2 and rows_holding(engine, QUESTION[:20]) == 1

    people.says("sms", AMIRA, "DELETE", "YES")

    after = recorded(sessions, amira)
    assert after[:5] == [(t, events.ids_only(d)) for t, d in before]
    assert after[5:] == [
        *[(events.SIGNATURE_WITHDRAWN, {"petition": slug, "id": signature_id,
                                        "number": number, "supporter": amira,
                                        "reason": "erased"})
          for slug, signature_id, number in signed],
        (events.SUPPORTER_ERASED, {"supporter": amira})]
    assert after[0][1] == {"petition": "sirt", "id": signed[0].id,
                           "number": signed[0].number, "supporter": amira, "channel": "sms"}
    assert after[2][1] == {"conversation": before[2][1]["conversation"], "supporter": amira,
                           "channel": "sms", "message": {"id": before[2][1]["message"]["id"],
                                                         "direction": "in"}}
    for personal in ("Amira", "Khan", "SW1A", "1AA", QUESTION[:20], "mum", AMIRA[3:]):
        assert rows_holding(engine, personal) == 0, personal
    with sessions() as session:  # every event is still to be delivered, scrubbed
        assert session.scalar(select(func.count()).select_from(EventDelivery).where(
            EventDelivery.status == "pending")) == len(after)


def test_a_staff_erasure_tells_the_same(people: Cast, sessions: sessionmaker[Session],
                                        engine: Engine) -> None:
    add_receiver(sessions, events.SIGNATURE_WITHDRAWN, events.SUPPORTER_ERASED)
    people.signs("sms", AMIRA, "Amira Khan", "SW1A 1AA")
    amira = people.supporter("sms", AMIRA)
    with sessions.begin() as session:
        erased = supporters.erase(session, amira, "ada@planets.example", utcnow())
    assert erased is not None and erased.signatures == 1
    assert types_of(sessions) == [events.SIGNATURE_WITHDRAWN, events.SUPPORTER_ERASED]
    assert recorded(sessions)[0][1]["reason"] == "erased"


def test_bens_two_records_become_one_and_his_second_signature_is_withdrawn(
        people: Cast, sessions: sessionmaker[Session], engine: Engine) -> None:
    """He signed by SMS and on Telegram; sharing his number joins the two records, and the
    petition counts him once. His earlier events are his one person's now, so that erasing
    him reaches them."""
    add_receiver(sessions, *EVERY_TYPE)
    people.signs("sms", BEN, "Ben Ross", "EH1 1YZ", updates="NO")
    people.signs("telegram", BEN_TELEGRAM, "Ben Ross", "EH1 1YZ", updates="NO")
    ben, on_telegram = people.supporter("sms", BEN), people.supporter("telegram", BEN_TELEGRAM)
    assert ben != on_telegram
    with sessions() as session:
        duplicate = session.scalars(select(Signature).where(
            Signature.supporter_id == on_telegram)).one()

    people.service.receive(Received(Channel.TELEGRAM, BEN_TELEGRAM, "", "contact-1",
                                    phone=BEN, contact="own"))

    assert people.supporter("telegram", BEN_TELEGRAM) == ben
    assert recorded(sessions)[-1] == (events.SIGNATURE_WITHDRAWN, {
        "petition": "sirt", "id": duplicate.id, "number": duplicate.number,
        "supporter": on_telegram, "reason": "merged"})
    assert types_of(sessions, on_telegram) == []
    assert types_of(sessions, ben) == [events.SIGNATURE_CREATED, events.SIGNATURE_CREATED,
                                       events.SIGNATURE_WITHDRAWN]
    with sessions() as session:
        assert set(session.scalars(select(EventDelivery.supporter_id))) == {ben}

    people.says("sms", BEN, "DELETE", "YES")
    assert rows_holding(engine, "Ben Ross") == 0


# Retention and the simulator -------------------------------------------------------------

def test_retention_deletes_old_settled_events_only(
        cfg: Config, sessions: sessionmaker[Session]) -> None:
    receiver = add_receiver(sessions, events.SUPPORTER_ERASED)
    now = utcnow()
    old = now - dt.timedelta(days=cfg.retention.inbound_text_days + 1)
    recent = now - dt.timedelta(days=cfg.retention.inbound_text_days - 1)
    made: dict[str, str | None] = {}
    with sessions.begin() as session:
        conn = session.connection()
        for name, at in (("delivered", old), ("failed", old), ("pending", old),
                         ("claimed", old), ("recent", recent)):
            made[name] = events.record(conn, events.SUPPORTER_ERASED,
                                       events.erased_data(1), 1, at)
        second = Receiver(url="http://127.0.0.1:9/other", secret=events.new_secret(),
                          events=[events.SUPPORTER_ERASED], created_by="ada@planets.example",
                          created_at=now)
        session.add(second)
        session.flush()
        made["half"] = events.record(conn, events.SUPPORTER_ERASED, events.erased_data(2), 2,
                                     old)
        status = {"delivered": "delivered", "failed": "failed", "pending": "pending",
                  "claimed": "claimed", "recent": "delivered", "half": "delivered"}
        for name, public_id in made.items():
            event_id = select(Event.id).where(Event.public_id == public_id).scalar_subquery()
            session.execute(update(EventDelivery).where(EventDelivery.event_id == event_id)
                            .values(status=status[name]))
        # One receiver of "half" has it; the other is still retrying.
        session.execute(update(EventDelivery).where(
            EventDelivery.event_id == select(Event.id).where(
                Event.public_id == made["half"]).scalar_subquery(),
            EventDelivery.receiver_id == second.id).values(status="pending"))

    report = retention.run(sessions, cfg, now, actor="test")

    assert report.events == 2
    with sessions() as session:
        left = set(session.scalars(select(Event.public_id)))
        receivers = set(session.scalars(select(EventDelivery.receiver_id)))
    assert left == {made["pending"], made["claimed"], made["recent"], made["half"]}
    assert receiver in receivers


def test_expired_events_go_a_chunk_per_transaction(
        cfg: Config, sessions: sessionmaker[Session], engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of thousands of old events must not be deleted in one statement of the run's
    transaction (signing records events, and would wait): each chunk is a transaction of
    its own, before the run's; the run's audit entry still counts them all."""
    add_receiver(sessions, events.SUPPORTER_ERASED)
    now = utcnow()
    old = now - dt.timedelta(days=cfg.retention.inbound_text_days + 1)
    with sessions.begin() as session:
        for supporter in range(1, 9):
            events.record(session.connection(), events.SUPPORTER_ERASED,
                          events.erased_data(supporter), supporter, old)
        session.execute(update(EventDelivery).values(status="delivered"))
        events.record(session.connection(), events.SUPPORTER_ERASED, events.erased_data(9), 9,
                      old)  # still to be delivered: stays
    monkeypatch.setattr(retention, "EVENT_CHUNK", 3)

    assert retention.run(sessions, cfg, now, dry_run=True).events == 8
    assert len(recorded(sessions)) == 9
    with deleted_per_transaction(engine, "events") as deleted:
        report = retention.run(sessions, cfg, now, actor="test")
    assert report.events == 8 and [d for d in deleted if d] == [3, 3, 2]
    assert [data["supporter"] for _, data in recorded(sessions)] == [9]
    with sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == retention.ACTION)
                                .order_by(AuditEntry.id.desc())).first()
    assert entry is not None and entry.detail is not None and entry.detail["events"] == 8


def test_the_daily_run_deletes_expired_events_too(
        cfg: Config, sessions: sessionmaker[Session]) -> None:
    add_receiver(sessions, events.SUPPORTER_ERASED)
    now = utcnow()
    with sessions.begin() as session:
        events.record(session.connection(), events.SUPPORTER_ERASED, events.erased_data(1), 1,
                      now - dt.timedelta(days=cfg.retention.inbound_text_days + 1))
        session.execute(update(EventDelivery).values(status="failed"))
    report = retention.run_if_due(sessions, cfg, now)
    assert report is not None and report.events == 1 and recorded(sessions) == []
    assert retention.run_if_due(sessions, cfg, now) is None  # not due again: nothing done


def test_a_closed_petitions_subscriptions_end_in_a_few_statements(
        cfg: Config, sessions: sessionmaker[Session], engine: Engine,
        people: Cast) -> None:
    """Retention ends every subscription of a petition closed months ago: thousands, each a
    subscription.changed event, recorded a thousand a statement (events.record_many), not
    three statements each, in the run's transaction."""
    add_receiver(sessions, events.SUBSCRIPTION_CHANGED)
    now = utcnow()
    with sessions.begin() as session:
        pid = session.scalar(select(Petition.id).where(Petition.slug == "sirt"))
        made = []
        for n in range(40):
            supporter = Supporter(phone=None, created_at=now)
            session.add(supporter)
            session.flush()
            identity = Identity(supporter_id=supporter.id, channel="telegram",
                                address=f"9000{n}", created_at=now)
            session.add(identity)
            session.flush()
            session.add(Subscription(identity_id=identity.id, petition_id=pid, created_at=now))
            made.append(supporter.id)
    assert pid is not None
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with sessions.begin() as session:
            retention._end_subscriptions(session, [pid], now)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # A look or two at the receivers and one batch of deliveries, not one of each a
    # subscription. The events themselves are one statement on PostgreSQL, one a row on
    # SQLite (whose RETURNING gives no order for a batch).
    assert sum("FROM event_receivers" in s for s in statements) <= 2
    assert sum(s.startswith("INSERT INTO event_deliveries") for s in statements) == 1
    if is_postgres(engine):
        assert len(statements) <= 5, statements
    ended = subscription_changes(sessions)
    assert [(d["supporter"], d["petition"], d["subscribed"], d["reason"]) for d in ended] == [
        (s, "sirt", False, "petition_closed") for s in made]


def test_the_simulator_records_no_event_even_on_the_live_database(
        service: Service, sessions: sessionmaker[Session], config: Config,
        database_url: str, tmp_path: Path) -> None:
    """Its sandbox is a database of its own; were it pointed at the live one by mistake,
    its engine still records nothing for a receiver. (On SQLite that mistake cannot run at
    all: the sandbox's message would wait for its own write lock to read the content.)"""
    add_receiver(sessions, *EVERY_TYPE)
    urls = [f"sqlite:///{tmp_path / 'simulator.db'}"]
    if not database_url.startswith("sqlite"):
        urls.append(database_url)
    for url in urls:
        sandbox = Sandbox(config, url, service)
        for text in ("Hi", "SIGN", "YES", "Sam Tester", "SW1A 1AA", "YES", "YES", QUESTION,
                     "STOP"):
            sandbox.send(1, Channel.SMS, text)
        with sandbox.service.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Signature)) == 1
        sandbox.reset(1)
        with sandbox.service.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Signature)) == 0
            assert session.scalar(select(func.count()).select_from(Event)) == 0
        sandbox.service.engine.dispose()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
