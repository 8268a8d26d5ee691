"""What operators see of a full signing (SMS through the Twilio webhook, Telegram through
its webhook) and of a broadcast (the real worker, senders and clients against the fake
Twilio and Telegram servers):

- logs, through the production pipeline (JSON, redaction): one line per inbound message and
  per send, each with a request id, channel, outcome and timing; no phone number in clear,
  no name, no postcode, no message text (theirs or ours), no bot token or auth token;
- metrics, parsed with prometheus-client's own parser: every one of those events counted.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from sqlalchemy import text as sql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.telegram.gateway import TelegramGateway
from bot.channels.telegram.outbound import TelegramSender
from bot.channels.twilio.outbound import TwilioSender
from bot.entry.worker import BroadcastWorker
from bot.infra import logs
from bot.infra.clock import utcnow
from bot.infra.config import Config
from bot.infra.metrics import MeteredPacer, MeteredSender
from bot.infra.pacing import LocalPacer
from bot.infra.settings import Settings
from bot.shell import broadcast
from bot.shell.broadcast import Audience
from tests.conftest import TWILIO_SID, TWILIO_TOKEN
from tests.e2e.telegram_chat import SECRET, TelegramUser
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.twilio_api import FakeTwilio
from tests.integration.twilio_helpers import Texter

AMIRA = "+447700900461"
OMAR = "+447700900462"          # signs, wants updates, but Twilio says he unsubscribed
KAI = 4242421                   # a Telegram chat id (short: the mask would not hide it)
ANNOUNCEMENT = "Thank you all: NHS England has agreed to meet us on Friday."
SIGNING = [("Hi, I saw your poster at the clinic", "menu"), ("SIGN", "consent"),
           ("YES", "name"), ("Amira Okafor", "postcode"), ("SW1A 1AA", "review"),
           ("YES", "updates"), ("YES", "signed")]
NEVER_LOGGED = ["Amira", "Okafor", "Omar", "Haddad", "Kai", "Nakamura", "SW1A", "1AA",
                "EH1", "1YZ", "G1 1AA", "poster at the clinic", "my mum", "NHS England has",
                "Hello from PLANETS", "Your signature is number", "What is your full name",
                "7700900461", "7700900462", str(KAI), TWILIO_TOKEN]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The production log pipeline (JSON, redacted) on the root logger, at INFO."""
    stream = io.StringIO()
    handler = logs.make_handler(stream, "json", logs.secret_values(
        {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET}))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTelegram, FakeTwilio]]:
    with FakeTelegram() as telegram, FakeTwilio() as twilio:
        yield telegram, twilio


@pytest.fixture
def world(settings: Settings, fakes: tuple[FakeTelegram, FakeTwilio]) -> Iterator[Flask]:
    telegram, twilio = fakes
    from webhooks import create_app

    app = create_app(dataclasses.replace(
        settings, telegram_bot_token=telegram.token, telegram_api_base_url=telegram.base_url,
        telegram_webhook_secret=SECRET, twilio_api_base_url=twilio.base_url))
    app.config["TESTING"] = True
    yield app
    runtime = app.extensions["petitionbot"]
    if runtime.telegram is not None:
        runtime.telegram.close()
    runtime.engine.dispose()


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus-client's own parser."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def broadcast_now(app: Flask, config: Config, sessions: sessionmaker[Session],
                  settings: Settings, telegram: FakeTelegram) -> None:
    now = utcnow()
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", ANNOUNCEMENT, "cli:test", Audience(),
                                 now=now)
        broadcast.approve(session, config, draft, "cli:test", now, operator=True)
    quiet = dataclasses.replace(config, broadcast=dataclasses.replace(
        config.broadcast, quiet_hours=None))
    gateway = TelegramGateway(telegram.token, telegram.base_url)
    senders = {"sms": MeteredSender(TwilioSender(settings, "sms"), "sms"),
               "telegram": MeteredSender(TelegramSender(gateway), "telegram")}
    pacer = MeteredPacer(LocalPacer({"sms": 50.0, "telegram": 50.0}))
    try:
        BroadcastWorker(quiet, sessions, senders, pacer).run(until_idle=True)
    finally:
        gateway.close()


def test_a_signing_and_a_broadcast_are_logged_without_anything_personal_and_counted(
        world: Flask, fakes: tuple[FakeTelegram, FakeTwilio], captured: io.StringIO,
        config: Config, sessions: sessionmaker[Session]) -> None:
    telegram, twilio = fakes
    client = world.test_client()
    before = scrape(client)
    amira, omar = Texter(client, AMIRA), Texter(client, OMAR)
    for text, _step in SIGNING:
        assert amira.says(text)
    for text in ("Hi", "SIGN", "YES", "Omar Haddad", "EH1 1YZ", "YES", "YES"):
        omar.says(text)
    kai = TelegramUser(client, telegram, KAI, "Kai")
    kai.sends("/start")
    for step in ("SIGN", "YES"):
        kai.presses(step)
    kai.sends("Kai Nakamura")
    kai.sends("G1 1AA")
    kai.presses("YES")
    kai.presses("YES")
    kai.sends("VOICE")
    kai.sends("my mum waited two years for SIRT")
    inbound_messages = len(SIGNING) + 7 + 9

    twilio.error_for(OMAR, 400, 21610)
    settings = world.extensions["petitionbot"].settings
    broadcast_now(world, config, sessions, settings, telegram)
    assert [m["to"] for m in twilio.sent] == [AMIRA]
    assert any(ANNOUNCEMENT in m["text"] for m in telegram.messages_to(KAI))

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    text = captured.getvalue()
    for secret in [*NEVER_LOGGED, telegram.token, telegram.token.split(":")[1], SECRET]:
        assert secret not in text, secret

    inbound = [line for line in lines if line.get("event") == "inbound"]
    assert len(inbound) == inbound_messages
    assert len({line["request_id"] for line in inbound}) == inbound_messages
    for line in inbound:
        assert line["request_id"] != "-" and line["logger"] == "petitionbot.inbound"
        assert line["channel"] in ("sms", "telegram")
        assert line["outcome"] in ("replied", "signed")
        assert isinstance(line["ms"], float)
    assert [line["step"] for line in inbound[:len(SIGNING)]] == [s for _, s in SIGNING]
    assert sum(line["outcome"] == "signed" for line in inbound) == 3

    sends = [line for line in lines if line.get("event") == "send"]
    assert sorted((s["channel"], s["outcome"]) for s in sends) == [
        ("sms", "failed"), ("sms", "sent"), ("telegram", "sent")]
    for line in sends:
        assert line["request_id"].startswith("send-") and isinstance(line["ms"], float)
    [refused] = [s for s in sends if s["outcome"] == "failed"]
    assert refused["error"] == "21610"

    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("petitionbot_inbound_messages_total", channel="sms", outcome="signed") == 2
    assert delta("petitionbot_inbound_messages_total", channel="telegram", outcome="signed") == 1
    assert sum(delta("petitionbot_inbound_messages_total", channel=c, outcome=o)
               for c in ("sms", "telegram") for o in ("replied", "signed")) == inbound_messages
    assert delta("petitionbot_signatures_total", channel="sms") == 2
    assert delta("petitionbot_signatures_total", channel="telegram") == 1
    assert delta("petitionbot_reply_seconds_count", channel="sms") == 14
    assert delta("petitionbot_reply_seconds_count", channel="telegram") == 9
    assert delta("petitionbot_deliveries_total", channel="sms", status="sent") == 1
    assert delta("petitionbot_deliveries_total", channel="sms", status="failed") == 1
    assert delta("petitionbot_deliveries_total", channel="telegram", status="sent") == 1
    assert delta("petitionbot_provider_errors_total", channel="sms", code="21610") == 1
    assert delta("petitionbot_send_seconds_count", channel="telegram") == 1
    assert value(after, "petitionbot_petition_signatures", petition="sirt", channel="sms") == 2
    assert value(after, "petitionbot_outbox_depth", channel="sms") == 0
    assert value(after, "petitionbot_database_up") == 1


def test_a_twilio_status_callback_counts_the_delivery(
        world: Flask, fakes: tuple[FakeTelegram, FakeTwilio], config: Config,
        sessions: sessionmaker[Session]) -> None:
    from tests.integration.twilio_helpers import sign

    telegram, twilio = fakes
    client = world.test_client()
    amira = Texter(client, AMIRA)
    for text, _step in SIGNING:
        amira.says(text)
    broadcast_now(world, config, sessions, world.extensions["petitionbot"].settings, telegram)
    [sent] = twilio.sent
    before = scrape(client)
    form = {"MessageSid": sent["sid"], "MessageStatus": "delivered", "To": AMIRA,
            "AccountSid": TWILIO_SID}
    url = "https://petition.example.org/twilio/status"
    response: Any = client.post("/twilio/status", data=form, base_url=url.rsplit("/", 2)[0],
                                headers={"X-Twilio-Signature": sign(form, url=url)})
    assert response.status_code == 204
    after = scrape(client)
    assert value(after, "petitionbot_deliveries_total", channel="sms", status="delivered") - (
        value(before, "petitionbot_deliveries_total", channel="sms", status="delivered")) == 1


def test_a_logged_database_error_holds_neither_the_values_nor_the_row(engine: Engine) -> None:
    """The SQL, not the names and numbers: SQLAlchemy keeps the parameters out
    (hide_parameters) and the log filter drops PostgreSQL's DETAIL, which quotes the row."""
    stream = io.StringIO()
    logger = logging.getLogger("petitionbot.test-database-errors")
    logger.addHandler(logs.make_handler(stream, "json"))
    logger.propagate = False
    row = {"phone": "+447700900999", "at": utcnow()}
    insert = sql("INSERT INTO supporters (phone, created_at) VALUES (:phone, :at)")
    nameless = sql("INSERT INTO signatures (petition_id, supporter_id, number, name, nation, "
                   "channel, signed_at) VALUES (1, 1, 1, :name, NULL, 'sms', :at)")
    try:
        with engine.begin() as connection:
            connection.execute(insert, row)
        for statement, values in ((insert, row), (nameless, {"name": "Amira Okafor",
                                                             "at": row["at"]})):
            with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
                connection.execute(statement, values)  # a duplicate; a missing nation
            assert "hidden" in str(raised.value)
            logger.error("database error: %s", type(raised.value).__name__,
                         exc_info=raised.value)
    finally:
        logger.handlers.clear()
    logged = stream.getvalue()
    assert logged.count("IntegrityError") >= 2 and "INSERT INTO signatures" in logged
    for value in ("7700900999", "Amira", "Okafor"):
        assert value not in logged, value
