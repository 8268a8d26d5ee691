"""POST /telegram/webhook as Telegram sends it, the app's replies going to a fake Bot API
over real HTTP: supporters sign by buttons and by typing, follow deep links, link their
phone numbers, block the bot and get rate limited; replays and forgeries change nothing
(DESIGN §5, §6, §8)."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel
from bot.core.render import TELEGRAM_LIMIT, Message, render
from bot.infra.settings import Settings
from models import Identity, InboundMessage, Supporter
from tests.conftest import CONFIG
from tests.e2e.telegram_chat import (
    PATH,
    SECRET,
    TelegramUser,
    buttons,
    contact_button,
    identity_of,
    is_escaped_html,
    keywords,
    plain,
    post_update,
    signatures,
    step_of,
)
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.twilio_helpers import Texter, signs
from tests.integration.twilio_helpers import identity_of as sms_identity_of
from webhooks import create_app

pytestmark = pytest.mark.e2e

AMIRA, BEN, CHLOE, DEV, EVE, FAY = 1001, 1002, 1003, 1004, 1005, 1006
GITA, HANA, IVAN = 1007, 1008, 1009
KIM, LEO = 876543210, 1011
JO = 987654321  # distinctive: the logs must not show it
JO_PHONE = "+447700900777"
DEV_PHONE = "+447700900555"
FAY_PHONE = "+447700900666"
LABELLED = {"SIGN": "Sign the petition", "MORE": "Read more", "INFO": "Info", "HELP": "Help",
            "YES": "Yes", "NO": "No", "EDIT": "Edit", "NONE": "I live outside the UK"}


def person(client: FlaskClient, fake: FakeTelegram, user_id: int, name: str) -> TelegramUser:
    return TelegramUser(client, fake, user_id, name)


def counts(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/petitions/sirt")
    assert response.status_code == 200
    result: dict[str, Any] = response.get_json()["counts"]
    return result


def rows(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def sign_by_buttons(user: TelegramUser, full_name: str, postcode: str) -> list[dict[str, Any]]:
    """From hello to signed (updates declined); returns the messages of the signing press."""
    user.sends("/start")
    return sign_by_buttons_after_start(user, full_name, postcode)


def sign_by_buttons_after_start(user: TelegramUser, full_name: str,
                                postcode: str) -> list[dict[str, Any]]:
    user.presses("SIGN")
    user.presses("YES")
    user.sends(full_name)
    user.sends(postcode)
    signed = user.presses("YES")
    user.presses("NO")
    return signed


def reach_review(user: TelegramUser, full_name: str, postcode: str) -> None:
    user.sends("/start")
    user.presses("SIGN")
    user.presses("YES")
    user.sends(full_name)
    assert "Shall we sign the petition" in "\n".join(plain(m) for m in user.sends(postcode))


# Signing ------------------------------------------------------------------------------------

def test_amira_signs_by_pressing_buttons(telegram_client: FlaskClient,
                                         fake_telegram: FakeTelegram,
                                         sessions: sessionmaker[Session]) -> None:
    amira = person(telegram_client, fake_telegram, AMIRA, "Amira")
    script = [
        # how    what she does  the bot says (in part)                 buttons shown   step
        ("type",  "/start",     "Hello from PLANETS Cancer Charity",    "",             "menu"),
        ("press", "SIGN",       "You must be 16 or over",               "YES NO",       "consent"),
        ("press", "YES",        "What is your full name?",              "",             "name"),
        ("type",  "Amira Khan", "Thanks, Amira Khan.",                  "NONE",         "postcode"),
        ("type",  "sw1a 1aa",   "Name: Amira Khan\nPostcode: SW1A 1AA", "YES EDIT",     "review"),
        ("press", "YES",        "Your signature is number 1 here",      "YES NO",       "updates"),
        ("press", "NO",         "OK, no updates",     "UPDATES MORE INFO STATUS HELP",  "signed"),
    ]
    pressed: list[int] = []
    for how, what, expected, last_buttons, step in script:
        if how == "press":
            pressed.append(amira.message_with_button(what)["message_id"])
            replies = amira.presses(what)
        else:
            replies = amira.sends(what)
        said = "\n".join(plain(m) for m in replies)
        assert expected in said, f"{how} {what!r}: bot said {said!r}"
        if last_buttons:
            shown = keywords(replies[-1])  # further choices (e.g. VOICE) may come and go
            assert set(last_buttons.split()) <= set(shown), (what, shown)
        assert step_of(sessions, AMIRA) == step, what

    sent = fake_telegram.messages_to(AMIRA)
    greeting, offer = sent[0], sent[1]
    assert keywords(greeting) == ["SIGN", "MORE", "INFO", "HELP"]
    assert [label for label, _ in buttons(greeting)] == [
        "Sign the petition", "Read more", "Info", "Help"]
    assert contact_button(offer) == "Share my phone number"  # offered once, after the greeting
    assert [contact_button(m) for m in sent[2:]] == [None] * (len(sent) - 2)
    for message in sent:
        assert message["parse_mode"] == "HTML"
        assert is_escaped_html(message["text"]) and len(message["text"]) <= TELEGRAM_LIMIT
        for label, data in buttons(message):  # every choice a button; data is the keyword
            assert data.isupper() and label == LABELLED.get(data, label), (label, data)

    # Every press was answered, and each pressed message lost its keyboard (text kept).
    presses = [c["params"]["callback_query_id"]
               for c in fake_telegram.calls_to("answerCallbackQuery")]
    assert len(presses) == 4 and len(set(presses)) == 4
    assert {a["callback_query_id"] for a in fake_telegram.answered_callbacks} == set(presses)
    assert [(e["method"], e["message_id"], e["reply_markup"]) for e in fake_telegram.edits] == [
        ("editMessageReplyMarkup", message_id, None) for message_id in pressed]

    [signature] = signatures(sessions)
    assert (signature.number, signature.name, signature.postcode, signature.channel,
            signature.referral) == (1, "Amira Khan", "SW1A 1AA", "telegram", None)
    assert counts(telegram_client)["by_channel"] == {"sms": 0, "whatsapp": 0, "telegram": 1}


def test_ben_signs_by_typing_keywords_from_abroad(telegram_client: FlaskClient,
                                                  fake_telegram: FakeTelegram,
                                                  sessions: sessionmaker[Session]) -> None:
    ben = person(telegram_client, fake_telegram, BEN, "Ben")
    for typed, expected, step in [
        ("Hi there",          "Hello from PLANETS Cancer Charity",  "menu"),
        ("sign",              "Privacy notice: https://",           "consent"),
        ("yes",               "What is your full name?",            "name"),
        ("Ben O'Neill",       "Thanks, Ben O'Neill.",               "postcode"),
        ("none",              "Which country do you live in?",      "country"),
        ("Trinidad & Tobago", "Country: Trinidad & Tobago",         "review"),
        ("YES",               "Your signature is number 1 here",    "updates"),
        ("no",                "OK, no updates",                     "signed"),
    ]:
        said = ben.says(typed)
        assert expected in said, f"typed {typed!r}, bot said {said!r}"
        assert step_of(sessions, BEN) == step, typed

    review = next(m for m in fake_telegram.messages_to(BEN) if "Trinidad" in m["text"])
    assert "Country: Trinidad &amp; Tobago" in review["text"]  # his words, HTML-escaped
    assert keywords(review) == ["YES", "EDIT"]  # buttons shown even to a typist
    assert all(is_escaped_html(m["text"]) for m in fake_telegram.messages_to(BEN))
    assert fake_telegram.answered_callbacks == [] and fake_telegram.edits == []
    [signature] = signatures(sessions)
    assert (signature.name, signature.country, signature.postcode, signature.nation) == (
        "Ben O'Neill", "Trinidad & Tobago", None, "outside_uk")


def test_telegram_text_is_escaped_and_within_the_limit() -> None:
    shown = render(Message("Amira <b>Khan</b> & co", ("SIGN", "NO")), Channel.TELEGRAM)
    assert shown.text == "Amira &lt;b&gt;Khan&lt;/b&gt; &amp; co"
    assert shown.buttons == (("Sign the petition", "SIGN"), ("No", "NO"))
    for long_text in ("Tom & Jerry <3 " * 600, "&<>" * 2000):
        shown = render(Message(long_text), Channel.TELEGRAM)
        assert TELEGRAM_LIMIT - 10 < len(shown.text) <= TELEGRAM_LIMIT  # cut, not gutted
        assert shown.text.endswith("...")
        assert is_escaped_html(shown.text), shown.text[-20:]  # no entity cut in half


# Replays ------------------------------------------------------------------------------------

def test_a_redelivered_update_has_one_effect(telegram_client: FlaskClient,
                                             fake_telegram: FakeTelegram,
                                             sessions: sessionmaker[Session]) -> None:
    amira = person(telegram_client, fake_telegram, AMIRA, "Amira")
    hello = fake_telegram.user_sends(AMIRA, "/start", queue=False)
    assert post_update(telegram_client, hello).status_code == 200
    assert post_update(telegram_client, hello).status_code == 200
    assert len(fake_telegram.messages_to(AMIRA)) == 2  # one greeting, one phone offer

    reach_review(amira, "Amira Khan", "SW1A 1AA")
    press = amira.press_update("YES")
    before = len(fake_telegram.messages_to(AMIRA))
    for _ in range(2):
        assert post_update(telegram_client, press).status_code == 200
    said = [plain(m) for m in fake_telegram.messages_to(AMIRA)[before:]]
    assert len(said) == 2 and "Your signature is number 1 here" in said[0]
    assert len(signatures(sessions)) == 1
    assert step_of(sessions, AMIRA) == "updates"
    # The copy is answered too (else the button spins), but changes nothing.
    query_id = press["callback_query"]["id"]
    assert [c["params"]["callback_query_id"]
            for c in fake_telegram.calls_to("answerCallbackQuery")][-2:] == [query_id] * 2


def test_ten_copies_of_one_update_at_once_sign_once(telegram_app: Flask,
                                                    telegram_client: FlaskClient,
                                                    fake_telegram: FakeTelegram,
                                                    sessions: sessionmaker[Session]) -> None:
    amira = person(telegram_client, fake_telegram, AMIRA, "Amira")
    reach_review(amira, "Amira Khan", "SW1A 1AA")
    press = amira.press_update("YES")
    before = len(fake_telegram.messages_to(AMIRA))
    start = threading.Barrier(10)
    statuses: list[int] = []

    def deliver() -> None:
        client = telegram_app.test_client()
        start.wait(timeout=10)
        statuses.append(post_update(client, copy.deepcopy(press)).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 10
    said = [plain(m) for m in fake_telegram.messages_to(AMIRA)[before:]]
    assert len(said) == 2 and "Your signature is number 1 here" in said[0], said
    assert len(signatures(sessions)) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.provider_id == str(press["update_id"]))) == 1
    assert counts(telegram_client)["here"] == 1


# Forged and malformed requests ---------------------------------------------------------------

@pytest.mark.parametrize("secret", [None, "", "wrong-token", SECRET.upper(), SECRET + "x"])
def test_a_request_without_the_secret_is_refused(secret: str | None,
                                                 telegram_client: FlaskClient,
                                                 fake_telegram: FakeTelegram,
                                                 sessions: sessionmaker[Session]) -> None:
    hello = fake_telegram.user_sends(AMIRA, "/start", queue=False)
    assert post_update(telegram_client, hello, secret=secret).status_code == 403
    assert rows(sessions, InboundMessage) == rows(sessions, Identity) == 0
    assert fake_telegram.sent == []


def test_without_a_configured_secret_every_update_is_refused(
        client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    hello = fake_telegram.user_sends(AMIRA, "/start", queue=False)
    for secret in (SECRET, "", None):
        assert post_update(client, hello, secret=secret).status_code == 403
    assert rows(sessions, InboundMessage) == 0


MESSAGE = {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private", "first_name": "Zed"},
           "from": {"id": 5, "is_bot": False, "first_name": "Zed"}, "text": "Zanzibar"}


def nested(depth: int) -> bytes:
    return b'{"update_id": 7, "message": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("body", [
    b"", b"{not json", b"[1, 2]", b"null", b"7", b'"Zanzibar"', b"\xff\xfe", b"\xed\xa0\x80",
    b'{"update_id": "7"}', b'{"message": {}}', b'{"update_id": true, "message": {}}',
    b'{"update_id": 7.5}', b'{"update_id": -7}', b'{"update_id": 18446744073709551616}',
    b'{"update_id": 1' + b"0" * 5000 + b"}",
    b'{"update_id": 7, "message": "garbage"}',
    b'{"update_id": 7, "message": {"chat": 5}}',
    b'{"update_id": 7, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": '
    b'"private"}, "text": "hi", "entities": "x"}}',
    nested(10_000),
    json.dumps({"update_id": 7, "message": {**MESSAGE, "text": 5}}).encode(),
    json.dumps({"update_id": 7, "message": {**MESSAGE, "text": ["Zanzibar"]}}).encode(),
    json.dumps({"update_id": 7, "message": {**MESSAGE, "caption": {"Zanzibar": 1}}}).encode(),
    json.dumps({"update_id": 7, "message": {
        **MESSAGE, "chat": {"id": "Zanzibar", "type": "private"}}}).encode(),
    json.dumps({"update_id": 7, "message": {
        **MESSAGE, "chat": {"id": 2**70, "type": "private"}}}).encode(),
    json.dumps({"update_id": 7, "message": {
        **MESSAGE, "from": {"id": True, "is_bot": False, "first_name": "Zed"}}}).encode(),
    json.dumps({"update_id": 7, "callback_query": {
        "id": "1", "from": MESSAGE["from"], "chat_instance": "1", "data": ["SIGN"],
        "message": MESSAGE}}).encode(),
])
def test_a_malformed_update_is_acknowledged_and_ignored(
        body: bytes, telegram_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = telegram_client.post(PATH, data=body, content_type="application/json",
                                    headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert response.status_code == 200  # Telegram would re-send anything else, forever
    assert rows(sessions, InboundMessage) == rows(sessions, Identity) == 0
    assert fake_telegram.sent == []
    said = [r for r in caplog.records if r.name.startswith("petitionbot")]
    assert len(said) == 1 and said[0].getMessage().startswith("telegram update ignored")
    assert "Zanzibar" not in caplog.text and "Zed" not in caplog.text


def test_a_malformed_update_with_the_wrong_secret_is_still_a_403(
        telegram_client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    response = telegram_client.post(PATH, data=b"{not json", content_type="application/json",
                                    headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
    assert response.status_code == 403


def test_an_oversized_update_is_a_413(telegram_client: FlaskClient,
                                      fake_telegram: FakeTelegram) -> None:
    update = {"update_id": 7, "message": {**MESSAGE, "text": "x" * 70_000}}
    assert post_update(telegram_client, update).status_code == 413
    assert fake_telegram.sent == []


# Deep links and share links ------------------------------------------------------------------

def test_chloe_follows_amiras_share_link(telegram_client: FlaskClient,
                                         fake_telegram: FakeTelegram,
                                         sessions: sessionmaker[Session]) -> None:
    amira = person(telegram_client, fake_telegram, AMIRA, "Amira")
    [thanks, _] = sign_by_buttons(amira, "Amira Khan", "SW1A 1AA")
    link = "https://t.me/planets_petition_bot?start=SIRT_r1"
    assert "Your signature is number 1 here" in plain(thanks) and link in plain(thanks)

    chloe = person(telegram_client, fake_telegram, CHLOE, "Chloe")
    greeting = chloe.says("/start SIRT_r1")
    assert "Hello from PLANETS Cancer Charity" in greeting and "no petition" not in greeting
    [chloes_thanks, _] = sign_by_buttons_after_start(chloe, "Chloe Brown", "M1 1AE")
    assert "https://t.me/planets_petition_bot?start=SIRT_r2" in plain(chloes_thanks)

    first, second = signatures(sessions)
    assert (first.name, first.referral) == ("Amira Khan", None)
    assert (second.name, second.number, second.referral) == ("Chloe Brown", 2, "r1")


@pytest.mark.parametrize("payload", [
    "NOPE_x", "NOPE", "a" * 65, "SIRT_r1;DROP", "../../etc/passwd", "<b>SIRT</b>",
    "SIRT_r1%00", "СИРТ_r1",
])
def test_an_unknown_or_bad_deep_link_gets_a_polite_greeting(
        payload: str, telegram_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    chloe = person(telegram_client, fake_telegram, CHLOE, "Chloe")
    replies = chloe.sends(f"/start {payload}")
    said = "\n".join(plain(m) for m in replies)
    assert said.startswith("Sorry, there is no petition with that code.")
    assert "Hello from PLANETS Cancer Charity" in said and payload not in said
    assert any(keywords(m) == ["SIGN", "MORE", "INFO", "HELP"] for m in replies)
    assert all(is_escaped_html(m["text"]) for m in replies)
    assert step_of(sessions, CHLOE) == "menu"
    # Signing afterwards credits nobody.
    sign_by_buttons_after_start(chloe, "Chloe Brown", "M1 1AE")
    [signature] = signatures(sessions)
    assert signature.referral is None


# One supporter across channels ---------------------------------------------------------------

def test_dev_signed_by_sms_then_links_telegram_and_is_counted_once(
        telegram_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    signs(Texter(telegram_client, DEV_PHONE), "Dev Patel", "M1 1AE")
    assert counts(telegram_client)["here"] == 1

    dev = person(telegram_client, fake_telegram, DEV, "Dev")
    hello = dev.sends("/start")
    assert contact_button(hello[-1]) == "Share my phone number"
    # Telegram sends the number in international format without the "+".
    linked = "\n".join(plain(m) for m in dev.shares_contact(DEV_PHONE.removeprefix("+")))
    assert "this chat is now linked to your phone number" in linked
    assert "You signed" in linked and "signature no. 1 here" in linked
    assert "already signed" in dev.says("SIGN")
    assert counts(telegram_client)["here"] == 1
    assert counts(telegram_client)["by_channel"] == {"sms": 1, "whatsapp": 0, "telegram": 0}

    by_sms = sms_identity_of(sessions, Texter(telegram_client, DEV_PHONE))
    by_telegram = identity_of(sessions, DEV)
    assert by_sms is not None and by_telegram is not None
    assert by_sms.supporter_id == by_telegram.supporter_id
    assert rows(sessions, Supporter) == 1 and len(signatures(sessions)) == 1


def test_fay_signed_on_both_channels_then_links_and_counts_once(
        telegram_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    signs(Texter(telegram_client, FAY_PHONE), "Fay Jones", "CF10 1AA")
    fay = person(telegram_client, fake_telegram, FAY, "Fay")
    sign_by_buttons(fay, "Fay Jones", "CF10 1AA")
    assert counts(telegram_client)["here"] == 2

    linked = "\n".join(plain(m) for m in fay.shares_contact(FAY_PHONE.removeprefix("+")))
    assert "this chat is now linked" in linked and "You signed" in linked
    assert counts(telegram_client)["here"] == 1
    assert rows(sessions, Supporter) == 1 and len(signatures(sessions)) == 1


def test_eve_cannot_link_someone_elses_number(telegram_client: FlaskClient,
                                              fake_telegram: FakeTelegram,
                                              sessions: sessionmaker[Session]) -> None:
    signs(Texter(telegram_client, DEV_PHONE), "Dev Patel", "M1 1AE")
    eve = person(telegram_client, fake_telegram, EVE, "Eve")
    eve.sends("/start")
    refused = "\n".join(plain(m) for m in eve.shares_contact(DEV_PHONE.removeprefix("+"),
                                                             contact_user_id=DEV))
    assert "Please share your own phone number" in refused
    # A phone-book contact (no Telegram user id) is not hers either.
    card = fake_telegram.user_shares_contact(EVE, DEV_PHONE, queue=False)
    del card["message"]["contact"]["user_id"]
    assert post_update(telegram_client, card).status_code == 200
    assert "Please share your own phone number" in plain(fake_telegram.messages_to(EVE)[-1])

    eves = identity_of(sessions, EVE)
    devs = sms_identity_of(sessions, Texter(telegram_client, DEV_PHONE))
    assert eves is not None and devs is not None and eves.supporter_id != devs.supporter_id
    with sessions() as session:
        assert session.get(Supporter, eves.supporter_id).phone is None  # type: ignore[union-attr]
    assert "You must be 16 or over" in eve.chooses("SIGN")  # not told she has signed
    assert counts(telegram_client)["here"] == 1


# Telegram's errors ---------------------------------------------------------------------------

def test_gita_blocked_the_bot_so_her_chat_is_marked_unreachable(
        telegram_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    gita = person(telegram_client, fake_telegram, GITA, "Gita")
    fake_telegram.block(GITA)
    assert gita.sends("/start") == []
    identity = identity_of(sessions, GITA)
    assert identity is not None and identity.unreachable_at is not None
    assert step_of(sessions, GITA) == "menu"  # what she sent still counted

    fake_telegram.unblock(GITA)
    assert "You must be 16 or over" in gita.says("SIGN")
    identity = identity_of(sessions, GITA)
    assert identity is not None and identity.unreachable_at is None  # she wrote: reachable


def test_hana_is_rate_limited_and_still_gets_her_reply(
        telegram_client: FlaskClient, fake_telegram: FakeTelegram) -> None:
    hana = person(telegram_client, fake_telegram, HANA, "Hana")
    fake_telegram.rate_limit(HANA, retry_after=1)
    said = hana.says("/start")
    assert "Hello from PLANETS Cancer Charity" in said
    statuses = [c["status"] for c in fake_telegram.calls_to("sendMessage")]
    assert statuses == [429, 200, 200]


def test_ivans_chat_migrates_and_the_reply_follows_it(
        telegram_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    new_chat = -1001234567890
    fake_telegram.migrate(IVAN, new_chat)
    assert post_update(telegram_client,
                       fake_telegram.user_sends(IVAN, "/start", "Ivan", queue=False)
                       ).status_code == 200
    assert identity_of(sessions, IVAN) is None
    moved = identity_of(sessions, new_chat)
    assert moved is not None
    said = [plain(m) for m in fake_telegram.messages_to(new_chat)]
    assert said and "Hello from PLANETS Cancer Charity" in said[0]


def test_jo_signs_while_telegram_is_down_and_nothing_personal_is_logged(
        telegram_client: FlaskClient, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # what production logs
    jo = person(telegram_client, fake_telegram, JO, "Jo")
    jo.sends("/start")
    assert "now linked" in plain(jo.shares_contact(JO_PHONE.removeprefix("+"))[0])
    jo.presses("SIGN")
    jo.presses("YES")
    jo.sends("Joanna Quill")
    jo.sends("EH1 1YZ")
    fake_telegram.fail_next("sendMessage", 502, times=10)
    press = jo.press_update("YES")
    assert post_update(telegram_client, press).status_code == 200
    [signature] = signatures(sessions)
    assert signature.name == "Joanna Quill"
    assert step_of(sessions, JO) == "updates"

    fake_telegram.reset()  # Telegram is back
    assert "You signed" in jo.says("STATUS")
    assert "telegram reply not sent" in caplog.text
    for secret in ("Joanna", "Quill", "EH1", "1YZ", JO_PHONE[3:], str(JO), "/start",
                   "STATUS", "signature no.", "You signed", fake_telegram.token,
                   fake_telegram.token.split(":")[1]):
        assert secret not in caplog.text, secret


@pytest.fixture
def late_telegram(settings: Settings) -> Iterator[tuple[Flask, FakeTelegram]]:
    """The app started while Telegram is unreachable: its Bot API URL is a loopback port
    nothing listens on yet; the fake Telegram, not started, will come up on that port."""
    fake = FakeTelegram(port=free_port())
    app = create_app(dataclasses.replace(
        settings, telegram_bot_token=fake.token, telegram_webhook_secret=SECRET,
        telegram_api_base_url=f"http://127.0.0.1:{fake.requested_port}/bot"))
    app.config["TESTING"] = True
    try:
        yield app, fake
    finally:
        app.extensions["petitionbot"].telegram.close()
        app.extensions["petitionbot"].engine.dispose()
        fake.stop()


def test_kim_writes_while_telegram_is_unreachable_and_is_answered_once_it_is_back(
        late_telegram: tuple[Flask, FakeTelegram], sessions: sessionmaker[Session],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app, fake = late_telegram
    client = app.test_client()
    # Telegram cannot be reached: getMe fails, yet her message is handled and answered 200.
    assert post_update(client, fake.user_sends(KIM, "/start", "Kim", queue=False)
                       ).status_code == 200
    assert step_of(sessions, KIM) == "menu"
    assert post_update(client, fake.user_sends(KIM, "SIGN", "Kim", queue=False)
                       ).status_code == 200
    assert step_of(sessions, KIM) == "consent"
    assert "telegram unreachable" in caplog.text
    assert "Kim" not in caplog.text and str(KIM) not in caplog.text

    fake.start()  # Telegram is back; the next request asks getMe again
    app.extensions["petitionbot"].telegram.retry_interval = 0.0
    kim = person(client, fake, KIM, "Kim")
    assert "What is your full name?" in kim.says("YES")
    assert step_of(sessions, KIM) == "name"
    assert [call["status"] for call in fake.calls_to("getMe")] == [200]
    thanks = [kim.says(said) for said in ("Kim Lee", "SW1A 1AA", "YES")][-1]
    assert "https://t.me/planets_petition_bot?start=SIRT_r1" in thanks  # getMe's username


def test_getme_is_asked_again_only_after_the_retry_interval(
        telegram_client: FlaskClient, telegram_app: Flask, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    gateway = telegram_app.extensions["petitionbot"].telegram
    gateway.retry_interval = 3600.0
    fake_telegram.fail_next("getMe", 502)
    for text, step in (("/start", "menu"), ("SIGN", "consent")):
        update = fake_telegram.user_sends(LEO, text, "Leo", queue=False)
        assert post_update(telegram_client, update).status_code == 200
        assert step_of(sessions, LEO) == step
    assert [call["status"] for call in fake_telegram.calls_to("getMe")] == [502]
    assert fake_telegram.sent == []

    gateway.retry_interval = 0.0
    leo = person(telegram_client, fake_telegram, LEO, "Leo")
    assert "What is your full name?" in leo.says("YES")
    assert [call["status"] for call in fake_telegram.calls_to("getMe")] == [502, 200]


# Under gunicorn ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_webhook_works_under_gunicorn_sync_workers(
        telegram_settings: Settings, fake_telegram: FakeTelegram, tmp_path: Path,
        sessions: sessionmaker[Session]) -> None:
    port = free_port()
    (tmp_path / "gunicorn.conf.py").write_text("")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(DATABASE_URL=telegram_settings.database_url, PETITIONBOT_CONFIG=str(CONFIG),
               SECRET_KEY="test", TELEGRAM_BOT_TOKEN=fake_telegram.token,
               TELEGRAM_API_BASE_URL=fake_telegram.base_url, TELEGRAM_WEBHOOK_SECRET=SECRET)
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "gunicorn.conf.py"),
         "-k", "sync", "-w", "2", "-b", f"127.0.0.1:{port}", "webhooks:create_app()"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}{PATH}"

    def post(update: dict[str, Any]) -> int:
        request = urllib.request.Request(
            url, data=json.dumps(update).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     "X-Telegram-Bot-Api-Secret-Token": SECRET})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    try:
        fake_telegram.wait_for(lambda _: _answers(url), timeout=30,
                               message="gunicorn did not start")
        for _ in range(3):  # whichever worker takes it, each owns its own event loop
            assert post(fake_telegram.user_sends(AMIRA, "/start", queue=False)) == 200
        assert post(fake_telegram.user_presses(AMIRA, "SIGN", queue=False)) == 200
        said = [plain(m) for m in fake_telegram.messages_to(AMIRA)]
        assert said[0].startswith("Hello from PLANETS") and "16 or over" in said[-1]
        assert len(fake_telegram.answered_callbacks) == 1
        assert step_of(sessions, AMIRA) == "consent"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
            log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.replace("/telegram/webhook", "/healthz"), timeout=2):
            return True
    except (OSError, urllib.error.URLError):
        return False


def test_an_update_that_fails_for_a_reason_of_its_own_is_dropped_not_retried_forever(
        telegram_app: Flask, telegram_client: FlaskClient, fake_telegram: FakeTelegram,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Telegram holds back a chat's later updates while it re-sends one: an update that
    would fail on every retry (a bug, a value refused) is acknowledged, logged by type and
    place only, and the next one is handled."""
    service = telegram_app.extensions["petitionbot"].service
    real = service.receive

    def broken(received: Any) -> Any:
        raise ValueError("Zanzibar")  # what it says never reaches the log

    monkeypatch.setattr(service, "receive", broken)
    hello = fake_telegram.user_sends(AMIRA, "Zanzibar", queue=False)
    assert post_update(telegram_client, hello).status_code == 200
    assert "ValueError at" in caplog.text and "Zanzibar" not in caplog.text
    monkeypatch.setattr(service, "receive", real)
    again = fake_telegram.user_sends(AMIRA, "/start", queue=False)
    assert post_update(telegram_client, again).status_code == 200
    assert fake_telegram.messages_to(AMIRA)
