"""What strangers send and what floods do (DESIGN §8): text no database or XML can hold,
a person flooding over two channels and several processes, a retry whose answer was lost,
and what a process may remember about a person after they are erased. On SQLite and on
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel
from bot.infra.config import Abuse
from bot.infra.settings import Settings
from bot.shell import unit_of_work
from bot.shell.service import Received, Service
from models import (
    Identity,
    InboundMessage,
    RateWindow,
    Signature,
    Supporter,
    Voice,
)
from models.supporters import petition_id
from tests.conftest import serving
from tests.integration.twilio_helpers import Texter, post, replies, signs, step_of

AMIRA = "+447700900123"
OVER_BUDGET = "pause our replies"


@pytest.fixture
def second_app(settings: Settings) -> Iterator[Flask]:
    """Another web process on the same database (its own Service, caches and budget)."""
    yield from serving(settings)


def stored_bodies(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return [b for b in session.scalars(select(InboundMessage.body)) if b is not None]


# Text no database or XML can hold -------------------------------------------------------

@pytest.mark.parametrize("bad", ["\x00", "\ufffe", "\uffff", "\ufdd0", "\U0010ffff", "\x1b"])
def test_a_nul_or_a_non_character_in_an_sms_is_answered_and_stored_clean(
        client: FlaskClient, sessions: sessionmaker[Session], bad: str) -> None:
    amira = Texter(client, AMIRA)
    said = amira.says(f"Hi{bad}there")
    assert "Hello from PLANETS" in said[0]
    assert stored_bodies(sessions) == ["Hithere"]
    # ...and the person goes on: a name with one in it is signed without it.
    transcript = signs(Texter(client, "+447700900124"), f"Zo{bad}e Smith", "SW1A 1AA")
    assert "Zoe Smith" in transcript[-2][0]
    with sessions() as session:
        assert session.scalars(select(Signature.name)).all() == ["Zoe Smith"]


def test_a_lone_surrogate_from_telegram_is_stored_clean(service: Service,
                                                        sessions: sessionmaker[Session]) -> None:
    """JSON can carry "\\ud800", which no UTF-8 database can store."""
    handled = service.receive(Received(Channel.TELEGRAM, "5550001", "Hi\ud800\udfff!", "1"))
    assert handled.replies and not handled.duplicate
    assert stored_bodies(sessions) == ["Hi!"]


def test_a_zero_width_space_in_a_name_disappears_rather_than_becoming_a_space(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    signs(Texter(client, AMIRA), "\ufeffAmi\u200bra Kh\u2060an", "SW1A 1AA")
    with sessions() as session:
        assert session.scalars(select(Signature.name)).all() == ["Amira Khan"]


def test_a_name_in_another_script_comes_back_recognisable_by_sms(client: FlaskClient) -> None:
    ivan = Texter(client, AMIRA)
    for body in ("Hi", "SIGN", "YES", "Иван Петров"):
        assert ivan.says(body)
    review = "\n".join(ivan.says("SW1A 1AA"))
    assert "Name: Ivan Petrov\n" in review


def test_an_approved_voice_with_non_characters_leaves_info_valid_xml(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    """Stored before text was cleaned on arrival: rendering cleans it too."""
    with sessions.begin() as session:
        session.add(Voice(petition_id=petition_id(session, "sirt"), supporter_id=None,
                          text="Care \uffff for all\ufffe", nation="wales",
                          status="approved", publish_consent=True,
                          created_at=dt.datetime.now(dt.UTC),
                          moderated_at=dt.datetime.now(dt.UTC)))
    whatsapp = Texter(client, AMIRA, "whatsapp")
    whatsapp.says("Hi")
    said = "\n".join(whatsapp.says("INFO"))  # replies() parses the TwiML as XML
    assert "Care  for all" in said


# The reply budget: per person, every channel, every process ------------------------------

def test_amira_flooding_by_sms_and_whatsapp_gets_one_budget_not_two(
        app: Flask, client: FlaskClient) -> None:
    app.extensions["petitionbot"].service.abuse = Abuse(3, 600)
    sms, whatsapp = Texter(client, AMIRA), Texter(client, AMIRA, "whatsapp")
    said = [(sms if i % 2 else whatsapp).says("MORE") for i in range(10)]
    answered = [s for s in said if s and OVER_BUDGET not in s[0]]
    notices = [s for s in said if s and OVER_BUDGET in s[0]]
    assert (len(answered), len(notices)) == (3, 1)


def test_the_budget_is_exact_across_web_processes_without_redis(
        app: Flask, second_app: Flask) -> None:
    assert not app.extensions["petitionbot"].settings.redis_url
    for each in (app, second_app):
        each.extensions["petitionbot"].service.abuse = Abuse(4, 600)
    texters = [Texter(a.test_client(), AMIRA, channel) for a in (app, second_app)
               for channel in ("sms", "whatsapp")]
    said = [texters[i % 4].says("MORE") for i in range(16)]
    assert sum(1 for s in said if s and OVER_BUDGET not in s[0]) == 4
    assert sum(1 for s in said if s and OVER_BUDGET in s[0]) == 1


@pytest.mark.postgres_only
def test_a_concurrent_flood_over_two_channels_and_processes_is_counted_exactly(
        app: Flask, second_app: Flask) -> None:
    for each in (app, second_app):
        each.extensions["petitionbot"].service.abuse = Abuse(5, 600)
    Texter(app.test_client(), AMIRA).says("Hi")  # the person exists: one row to lock
    said: list[list[str]] = []
    lock = threading.Lock()

    def flood(flask_app: Flask, channel: str) -> None:
        texter = Texter(flask_app.test_client(), AMIRA, channel)
        for _ in range(8):
            got = texter.says("MORE")
            with lock:
                said.append(got)

    threads = [threading.Thread(target=flood, args=(a, c))
               for a in (app, second_app) for c in ("sms", "whatsapp")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for s in said if s and OVER_BUDGET not in s[0]) == 4  # 5, less the "Hi"
    assert sum(1 for s in said if s and OVER_BUDGET in s[0]) == 1


def test_over_budget_delete_is_asked_in_the_notices_place_and_her_yes_erases_her(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    amira = Texter(client, AMIRA, "whatsapp")
    signs(amira, "Amira Khan", "SW1A 1AA")  # seven answered messages
    app.extensions["petitionbot"].service.abuse = Abuse(7, 600)  # she is at the limit now
    assert "Shall we delete them?" in amira.says("DELETE")[0]  # instead of the notice
    assert amira.says("YES") == []  # past the notice: unanswered, but it takes effect
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 0
        assert session.scalar(select(func.count()).select_from(Supporter)) == 0


def test_over_budget_a_delete_she_was_never_asked_about_does_not_erase_her_on_yes(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    amira = Texter(client, AMIRA, "whatsapp")
    signs(amira, "Amira Khan", "SW1A 1AA")
    app.extensions["petitionbot"].service.abuse = Abuse(7, 600)
    assert OVER_BUDGET in amira.says("MORE")[0]
    assert amira.says("DELETE") == []  # the question could not be asked...
    assert amira.says("YES") == []     # ...so this YES answers nothing
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1
    app.extensions["petitionbot"].service.abuse = Abuse(100, 600)  # the window passes
    assert "Shall we delete them?" in amira.says("YES")[0]  # asked now, before any erasure
    assert "erased" in amira.says("YES")[0]


def test_erasing_herself_does_not_refill_gethins_budget(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    """N answers, DELETE, YES, again and again, would be unbounded replies: the budget
    outlives the erasure (keyed hashes of the address and phone, nothing personal)."""
    app.extensions["petitionbot"].service.abuse = Abuse(2, 600)
    gethin = Texter(client, AMIRA)
    said = [gethin.says(body) for body in ("Hi", "MORE", "DELETE", "YES")]
    assert [bool(s) for s in said] == [True, True, True, False]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Supporter)) == 0
        keys = session.scalars(select(RateWindow.key)).all()
    assert keys and not any(AMIRA.lstrip("+") in k for k in keys)
    for _ in range(3):
        assert [gethin.says(body) for body in ("Hi", "MORE", "DELETE", "YES")] == [[]] * 4
    whatsapp = Texter(client, AMIRA, "whatsapp")  # the same phone on another channel
    assert whatsapp.says("Hi") == []


def test_over_budget_stop_is_acknowledged_in_the_notices_place(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    app.extensions["petitionbot"].service.abuse = Abuse(2, 600)
    gethin = Texter(client, AMIRA)
    gethin.says("Hi")
    gethin.says("MORE")
    assert gethin.says("STOP") == [
        "You will get no more messages from PLANETS here. Reply START to resume."]
    with sessions() as session:
        assert session.scalars(select(Identity.opted_out_at)).one() is not None


def test_over_budget_stop_then_start_take_effect(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    app.extensions["petitionbot"].service.abuse = Abuse(2, 600)
    gethin = Texter(client, AMIRA)
    for body in ("Hi", "MORE", "MORE", "MORE"):
        gethin.says(body)
    assert gethin.says("STOP") == []  # the notice was said already
    with sessions() as session:
        assert session.scalars(select(Identity.opted_out_at)).one() is not None
    assert gethin.says("START") == []
    with sessions() as session:
        assert session.scalars(select(Identity.opted_out_at)).one() is None


def test_over_budget_words_leave_the_conversation_where_it_was(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    """Nothing happens that she is not told about: SIGN over budget does not move her on
    to the consent question she never saw."""
    app.extensions["petitionbot"].service.abuse = Abuse(1, 600)
    amira = Texter(client, AMIRA)
    amira.says("Hi")
    before = step_of(sessions, amira)
    assert OVER_BUDGET in amira.says("SIGN")[0]
    assert step_of(sessions, amira) == before != "consent"


# A retry whose answer was lost -------------------------------------------------------------

def test_a_retried_message_gets_its_first_answer_again(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    amira = Texter(client, AMIRA)
    hello = amira.payload("Hi")
    first = replies(post(client, hello))
    assert "Hello from PLANETS" in first[0]
    again = replies(post(client, hello))
    assert again == first
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1


# Nothing about a person outlives their erasure in a process -----------------------------

def test_an_erased_supporters_voice_is_gone_from_every_process_at_once(
        app: Flask, second_app: Flask, sessions: sessionmaker[Session]) -> None:
    rhian = Texter(app.test_client(), AMIRA, "whatsapp")
    signs(rhian, "Rhian Jones", "CF10 1AA")
    for body in ("VOICE", "Everyone deserves NICE approved care", "YES"):
        rhian.says(body)
    with sessions.begin() as session:
        voice = session.scalars(select(Voice)).one()
        voice.status, voice.moderated_at = "approved", dt.datetime.now(dt.UTC)
    other = Texter(second_app.test_client(), "+447700900999", "whatsapp")
    other.says("Hi")
    assert "Everyone deserves" in "\n".join(other.says("INFO"))  # seen, and remembered?
    rhian.says("DELETE")
    rhian.says("YES")
    assert "Everyone deserves" not in "\n".join(other.says("INFO"))


# SQLite's write lock held by someone else -------------------------------------------------

def test_inbound_patience_is_inside_twilios_fifteen_seconds() -> None:
    assert unit_of_work.INBOUND_PATIENCE < 15


def test_with_the_sqlite_write_lock_held_a_webhook_answers_503_in_its_patience(
        app: Flask, client: FlaskClient, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's own write lock")
    monkeypatch.setattr(unit_of_work, "INBOUND_PATIENCE", 0.3)
    holder = sqlite3.connect(Path(settings.database_url.removeprefix("sqlite:///")),
                             isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # e.g. the sqlite3 shell, outside the app's lock
    try:
        response = Texter(client, AMIRA).send("Hi")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503
    assert "Hello from PLANETS" in Texter(client, AMIRA).says("Hi")[0]  # and then it works


def test_a_message_that_lost_a_race_is_handled_again_not_refused(
        service: Service, sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A unique key another transaction took first (it has committed by now) is not the
    message's fault: it runs again, once, against what was written."""
    real = service._receive
    tries: list[int] = []

    def racing(conn: Any, msg: Received) -> Any:
        tries.append(1)
        if len(tries) == 1:
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return real(conn, msg)

    monkeypatch.setattr(service, "_receive", racing)
    handled = service.receive(Received(Channel.SMS, AMIRA, "Hi", "SM" + "1" * 32,
                                       phone=AMIRA))
    assert len(tries) == 2 and handled.replies
    assert stored_bodies(sessions) == ["Hi"]
