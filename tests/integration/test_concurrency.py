"""Messages that arrive at the same moment (DESIGN §5, §8): real threads, released together
by a barrier, each with its own Flask test client on one app, as gunicorn threads would be.

These run on SQLite too (it serialises writers); on PostgreSQL they exercise the row locks.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel, Step
from bot.shell import unit_of_work
from bot.shell.people import stored_state
from bot.shell.service import Received, Service
from models import (
    ChannelCount,
    ConsentRecord,
    Conversation,
    Identity,
    InboundMessage,
    Petition,
    Signature,
    Subscription,
    Supporter,
)
from models.db import LOCK_TIMEOUT, WriterLock
from tests.conftest import together
from tests.integration.twilio_helpers import (
    Texter,
    new_sid,
    post,
    reaches_review,
    replies,
    step_of,
)

AMIRA = "+447700900123"
SIGNED = re.compile(r"Your signature is number (\d+) here")


def count(sessions: sessionmaker[Session], model: type, *where: object) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def petition_counters(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as session:
        row = session.execute(select(Petition.signature_count, Petition.last_number)
                              .where(Petition.slug == "sirt")).one()
        return row.signature_count, row.last_number


def conversations_are_valid(sessions: sessionmaker[Session]) -> list[str]:
    """Every stored conversation reads back as a known step with consistent data."""
    with sessions() as session:
        steps = []
        for conv in session.scalars(select(Conversation)):
            state = stored_state(conv.step, conv.data)
            assert state.step == Step(conv.step), conv.data  # read back, no fall back
            steps.append(conv.step)
        return steps


def test_twenty_copies_of_amiras_first_sms_have_one_effect(
        app: Flask, sessions: sessionmaker[Session]) -> None:
    hello = Texter(app.test_client(), AMIRA).payload("Hi")
    responses = together([lambda: post(app.test_client(), hello) for _ in range(20)])

    said = [replies(response) for response in responses]  # every copy: 200 and TwiML
    # Each copy gets the one answer (whichever copy Twilio is still waiting for hears it).
    assert "Hello from PLANETS" in said[0][0]
    assert all(s == said[0] for s in said)
    assert count(sessions, InboundMessage) == 1
    assert count(sessions, Supporter) == 1
    assert count(sessions, Identity) == 1
    assert conversations_are_valid(sessions) == ["menu"]


def test_twenty_copies_of_one_message_through_the_service(
        service: Service, sessions: sessionmaker[Session]) -> None:
    sid = new_sid()
    for body in ("Hi", "SIGN"):
        service.receive(Received(Channel.WHATSAPP, AMIRA, body, new_sid(), phone=AMIRA))
    yes = Received(Channel.WHATSAPP, AMIRA, "YES", sid, phone=AMIRA)
    handled = together([lambda: service.receive(yes) for _ in range(20)])

    assert sum(h.duplicate for h in handled) == 19
    first = next(h.replies for h in handled if not h.duplicate)
    assert first and all(h.replies == first for h in handled if h.duplicate)
    assert count(sessions, InboundMessage, InboundMessage.provider_id == sid) == 1
    assert count(sessions, ConsentRecord) == 1  # the one effect: consent to sign, once
    assert conversations_are_valid(sessions) == ["name"]


def test_amira_taps_yes_twice_at_the_review_and_signs_once(
        app: Flask, sessions: sessionmaker[Session]) -> None:
    amira = Texter(app.test_client(), AMIRA)
    reaches_review(amira, "Amira Khan", "SW1A 1AA")
    said = together([lambda: replies(post(app.test_client(), amira.payload("YES")))
                     for _ in range(2)])

    assert sum(1 for s in said if SIGNED.search(s[0])) == 1
    assert count(sessions, Signature) == 1
    assert petition_counters(sessions) == (1, 1)
    # The two are handled one after the other: the second YES answers the updates question.
    assert conversations_are_valid(sessions) == ["signed"]
    assert count(sessions, Subscription) == 1


def test_amira_says_yes_by_sms_and_whatsapp_at_once_and_signs_once(
        app: Flask, sessions: sessionmaker[Session]) -> None:
    by_sms = Texter(app.test_client(), AMIRA)
    on_whatsapp = Texter(app.test_client(), AMIRA, "whatsapp", profile_name="Amira")
    reaches_review(by_sms, "Amira Khan", "SW1A 1AA")
    reaches_review(on_whatsapp, "Amira Khan", "SW1A 1AA")
    said = together([lambda: replies(post(app.test_client(), by_sms.payload("YES"))),
                     lambda: replies(post(app.test_client(), on_whatsapp.payload("YES")))])

    numbers = [int(m.group(1)) for s in said if (m := SIGNED.search(s[0]))]
    assert numbers == [1, 1]  # both told the one number she holds
    assert count(sessions, Supporter) == 1
    assert count(sessions, Signature) == 1
    assert petition_counters(sessions) == (1, 1)
    with sessions() as session:
        by_channel = dict(session.execute(select(ChannelCount.channel, ChannelCount.count)).all())
    assert sorted(by_channel.values()) == [0, 0, 1]
    assert conversations_are_valid(sessions) == ["updates", "updates"]
    assert step_of(sessions, by_sms) == step_of(sessions, on_whatsapp) == "updates"


def test_fifty_people_sign_at_the_same_moment(
        app: Flask, sessions: sessionmaker[Session]) -> None:
    people = [Texter(app.test_client(), f"+4477009{n:05d}", "whatsapp" if n % 2 else "sms")
              for n in range(50)]
    for n, person in enumerate(people):
        reaches_review(person, f"Supporter {chr(65 + n // 26)}{chr(65 + n % 26)}x", "M1 1AE")

    said = together([lambda p=p: replies(post(app.test_client(), p.payload("YES")))
                     for p in people])

    numbers = sorted(int(m.group(1)) for s in said if (m := SIGNED.search(s[0])))
    assert numbers == list(range(1, 51))
    with sessions() as session:
        assert sorted(session.scalars(select(Signature.number))) == list(range(1, 51))
        by_channel = dict(session.execute(select(ChannelCount.channel, ChannelCount.count)).all())
    assert petition_counters(sessions) == (50, 50)
    assert by_channel == {"sms": 25, "whatsapp": 25, "telegram": 0}
    counts = app.test_client().get("/api/petitions/sirt").get_json()["counts"]
    assert counts["here"] == 50
    assert conversations_are_valid(sessions) == ["updates"] * 50


def test_ten_copies_of_amiras_delete_confirmation_at_once_erase_her_once(
        app: Flask, sessions: sessionmaker[Session]) -> None:
    amira = Texter(app.test_client(), AMIRA, "whatsapp")
    reaches_review(amira, "Amira Khan", "SW1A 1AA")
    assert amira.says("YES")
    assert "Shall we delete them?" in amira.says("DELETE")[0]
    confirm = amira.payload("YES")
    said = together([lambda: replies(post(app.test_client(), confirm)) for _ in range(10)])

    assert "erased" in said[0][0] and all(s == said[0] for s in said)
    assert count(sessions, Supporter) == 0
    assert count(sessions, Identity) == 0
    assert count(sessions, Signature) == 0
    assert petition_counters(sessions) == (0, 1)  # numbers are never reused


def test_amira_writes_by_sms_while_her_whatsapp_delete_goes_through(
        app: Flask, sessions: sessionmaker[Session]) -> None:
    by_sms = Texter(app.test_client(), AMIRA)
    on_whatsapp = Texter(app.test_client(), AMIRA, "whatsapp")
    reaches_review(by_sms, "Amira Khan", "SW1A 1AA")
    assert by_sms.says("YES")
    assert on_whatsapp.says("Hi")
    assert "Shall we delete them?" in on_whatsapp.says("DELETE")[0]
    said = together([lambda: replies(post(app.test_client(), on_whatsapp.payload("YES"))),
                     lambda: replies(post(app.test_client(), by_sms.payload("Hello")))])

    assert "erased" in said[0][0]
    assert said[1]  # answered either as the signer (just before) or as a stranger (after)
    assert count(sessions, Signature) == 0
    assert petition_counters(sessions) == (0, 1)
    assert count(sessions, Identity, Identity.channel == "whatsapp") == 0
    with sessions() as session:  # if she is known again, it is only by her new SMS
        for supporter_id in session.scalars(select(Supporter.id)):
            assert session.execute(select(Identity.channel).where(
                Identity.supporter_id == supporter_id)).scalars().all() == ["sms"]
            assert session.scalar(select(func.count()).select_from(ConsentRecord).where(
                ConsentRecord.supporter_id == supporter_id)) == 0
    conversations_are_valid(sessions)


def test_on_sqlite_a_process_writes_its_messages_on_one_connection(
        service: Service, sessions: sessionmaker[Session]) -> None:
    """SQLite empties a connection's page cache whenever another one has written: a
    process's messages take turns, on the connection the last one used."""
    if service.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL runs a process's messages side by side")
    people = [f"+4477009002{i:02d}" for i in range(12)]
    handled = together([lambda phone=phone: service.receive(
        Received(Channel.SMS, phone, "Hi", new_sid(), phone=phone)) for phone in people])

    assert all(h.replies for h in handled)
    assert len(service.transactions._idle) == 1  # one connection did every write
    assert service.engine.pool.checkedout() == 1  # that one, kept for the next message
    assert count(sessions, Identity) == 12


def test_on_sqlite_a_message_that_waits_too_long_for_its_turn_is_refused_unchanged(
        app: Flask, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 (the provider retries) that wrote nothing; the next message goes through."""
    rt = app.extensions["petitionbot"]
    if rt.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL runs a process's messages side by side")
    monkeypatch.setattr(unit_of_work, "INBOUND_PATIENCE", 0.2)
    amira = Texter(app.test_client(), AMIRA)
    with rt.service.transactions._one_at_a_time:  # a message before hers that does not finish
        assert post(app.test_client(), amira.payload("Hi")).status_code == 503
    assert count(sessions, InboundMessage) == 0
    assert count(sessions, Identity) == 0
    assert replies(post(app.test_client(), amira.payload("Hi")))


def test_on_sqlite_the_turn_and_the_write_lock_share_one_timeout(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Queued for its turn, a message gives the write lock only what is left of the wait."""
    if service.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no write lock")
    given: list[float] = []
    acquire = WriterLock.acquire

    def recording(self: WriterLock, timeout: float = LOCK_TIMEOUT) -> bool:
        given.append(timeout)
        return acquire(self, timeout)

    monkeypatch.setattr(WriterLock, "acquire", recording)
    monkeypatch.setattr(unit_of_work, "INBOUND_PATIENCE", 5.0)
    service.receive(Received(Channel.SMS, AMIRA, "Hi", new_sid(), phone=AMIRA))
    assert given and all(0 <= t <= 5.0 for t in given)
    with service.sessions.begin() as session:  # any other writer waits the whole time
        session.execute(select(func.count()).select_from(Identity))
    assert given[-1] == LOCK_TIMEOUT
