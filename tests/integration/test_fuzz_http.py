"""The HTTP surface fuzzed with hypothesis (DESIGN §5, §8): whatever a stranger sends, the
answer is a reply or a 4xx, never a 5xx while the database is up; a Twilio reply that is
200 is well-formed TwiML; a malformed Telegram update is acknowledged (200) and ignored;
and a refused request (4xx) changes no stored row.

Bodies are built as bytes, as they arrive: percent-encoded UTF-8 of any text (NUL, lone
surrogates written with surrogatepass, so invalid UTF-8, U+FFFE/U+FFFF), raw bytes, huge
values, duplicate fields; Twilio forms both correctly signed (twilio's own validator over
the fields as the app decodes them) and not. Each test prints how many cases it ran.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import secrets
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator
from werkzeug.test import EnvironBuilder, TestResponse
from werkzeug.wrappers import Request

from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell import broadcast
from models import Base, Delivery, Identity, Petition, Supporter, Voice
from tests.conftest import PUBLIC_URL, TWILIO_SID, TWILIO_TOKEN
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.console_helpers import CONSOLE, Browser, add_people, email_of, signer

FORM = "application/x-www-form-urlencoded"
SECRET = "fuzz-secret-token"

# Tables a refused (4xx) request may still change, legitimately: a failed console login
# (401, then 429) is written to audit_log, and counted by the login throttle, which keeps
# its windows in rate_windows. Every other table must be unchanged by any 4xx.
MAY_CHANGE_WHEN_REFUSED = frozenset({"audit_log", "rate_windows"})


def fuzz_settings(examples: int) -> settings:
    """Enough cases to matter, the whole file in about 40 s on SQLite; no example database
    (a failure prints its minimal input, which is what gets reported)."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


class Cases:
    """Counts the cases hypothesis ran, and the answers, and prints them past pytest's
    capture (so the counts can be quoted, and a fuzzer that only ever met 400 is seen)."""

    def __init__(self, name: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.name, self.capsys, self.count = name, capsys, 0
        self.statuses: Counter[str] = Counter()

    def __call__(self) -> None:
        self.count += 1

    def saw(self, response: TestResponse, kind: str = "") -> None:
        self.statuses[f"{kind} {response.status_code}".strip()] += 1

    def report(self) -> None:
        answers = ", ".join(f"{what}: {n}" for what, n in sorted(self.statuses.items()))
        with self.capsys.disabled():
            print(f"\n{self.name}: {self.count} hypothesis cases ({answers})")


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but those a refusal may change), in key order."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name in MAY_CHANGE_WHEN_REFUSED:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows[table.name] = [tuple(row) for row in
                                connection.execute(select(table).order_by(*order))]
    return rows


def checked(engine: Engine, send: Callable[[], TestResponse]) -> TestResponse:
    """Send a request: never a 5xx; when refused (4xx), nothing stored changed."""
    before = snapshot(engine)
    response = send()
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if 400 <= response.status_code < 500:
        after = snapshot(engine)
        changed = [name for name in before if before[name] != after[name]]
        assert not changed, (response.status_code, changed)
    return response


# Strategies: text and bytes as strangers send them ------------------------------------------

STRANGE = ["\x00", "\ud800", "\udfff", "\ud83d", "\ufffe", "\uffff", "\U0010ffff", "\U0001fffe",
           "\ufffd", "\x01", "\x1b", "\x7f", "\u0085", "\u2028", "\u202e", "\u200b", "\ufeff",
           "&", "=", "+", "%", "%00", "%zz", "<", ">", "]]>", "'", '"', "\r\n", "\t", "é",
           "\u2019", "\u2013", "😀", "\U000e0001"]
STRANGE_TEXT = st.lists(st.one_of(st.characters(), st.sampled_from(STRANGE)),
                        max_size=40).map("".join)
HUGE_TEXT = st.builds(lambda piece, n: (piece * n)[:n], st.sampled_from(["x", "é", "\x00", "😀",
                                                                           "\uffff", "%"]),
                      st.sampled_from([161, 1601, 4097, 5000, 12_000, 70_000]))


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn as often as its weight says."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(
        lambda chosen: chosen)


# Huge values are rare in any one field (a form has many; past 64 KiB it is only a 413).
ANY_TEXT = weighted((30, STRANGE_TEXT), (1, HUGE_TEXT))
Piece = str | bytes
PIECE = st.one_of(ANY_TEXT, st.binary(max_size=30))
KEYWORDS = ["Hi", "SIGN", "YES", "NO", "NONE", "EDIT", "MORE", "INFO", "HELP", "STOP", "START",
            "STATUS", "DELETE", "RESTART", "VOICE", "UPDATES", "1", "2", "Amira Khan",
            "SW1A 1AA", "France", "/start", "/start SIRT_r1"]
BODY_TEXT = weighted((3, st.sampled_from(KEYWORDS)), (6, STRANGE_TEXT), (1, HUGE_TEXT))


def encoded(piece: Piece) -> bytes:
    raw = piece if isinstance(piece, bytes) else piece.encode("utf-8", "surrogatepass")
    return quote_plus(raw).encode("ascii")


def form_body(pairs: list[tuple[Piece, Piece]], junk: bytes = b"") -> bytes:
    """An urlencoded body; `junk` is appended unencoded (a field of raw bytes)."""
    body = b"&".join(encoded(name) + b"=" + encoded(value) for name, value in pairs)
    return body + (b"&" + junk if junk else b"")


# Twilio ------------------------------------------------------------------------------------

SID = weighted((15, st.binary(min_size=16, max_size=16).map(lambda b: "SM" + b.hex())),
               (1, st.sampled_from(["", "SM", "SM" + "0" * 31, "SM" + "g" * 32, "sm" + "0" * 32,
                                    "MM" + "F" * 32, "SM" + "0" * 32 + "\n"])),
               (1, STRANGE_TEXT))
FROM = weighted(
    (3, st.integers(0, 10**9 - 1).map(lambda n: f"+447{n:09d}")),
    (3, st.integers(0, 10**9 - 1).map(lambda n: f"whatsapp:+447{n:09d}")),
    (1, st.sampled_from(["+447700900123", "whatsapp:+447700900123", "07700 900123", "",
                         "whatsapp:", "+1", "+44", "not a number", "+4477009001234567890",
                         "whatsapp:whatsapp:+44", "+44 7700 900123\x00", "\uff0b447700900123",
                         "+999999999999"])),
    (1, STRANGE_TEXT))
TWILIO_FIELDS = ["MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "From", "To", "Body",
                 "NumMedia", "NumSegments", "OptOutType", "ProfileName", "WaId", "ButtonPayload",
                 "MessageStatus", "ErrorCode", "ApiVersion", "MediaUrl0", ""]
FIELD_NAME = weighted((1, st.sampled_from(TWILIO_FIELDS)), (2, PIECE))


@st.composite
def twilio_message(draw: st.DrawFn) -> list[tuple[Piece, Piece]]:
    """A near-valid inbound message (fields Twilio sends, some of them strange), or not."""
    sender = draw(FROM)
    sid = draw(SID)
    pairs: list[tuple[Piece, Piece]] = [
        ("MessageSid", sid), ("SmsSid", sid), ("AccountSid", TWILIO_SID), ("From", sender),
        ("To", "whatsapp:+447700900000" if sender.startswith("whatsapp:") else "+447700900000"),
        ("Body", draw(BODY_TEXT)), ("NumMedia", "0"), ("ApiVersion", "2010-04-01")]
    if draw(st.booleans()):
        pairs.append(("OptOutType", draw(st.one_of(st.sampled_from(
            ["STOP", "START", "HELP", "stop", ""]), STRANGE_TEXT))))
    pairs += draw(st.lists(st.tuples(FIELD_NAME, PIECE), max_size=3))  # duplicates, extras
    pairs = draw(st.permutations(pairs))
    if draw(st.integers(0, 5)) == 0:  # sometimes one is lost
        del pairs[draw(st.integers(0, len(pairs) - 1))]
    return pairs


ANY_FORM = st.lists(st.tuples(FIELD_NAME, PIECE), max_size=12)
CONTENT_TYPE = st.sampled_from([FORM] * 40 + [FORM + "; charset=utf-8", "text/plain", "",
                                              "application/json", "multipart/form-data"])
SIGNED = st.sampled_from([True, True, False])
SIGNATURE = st.one_of(st.none(), st.just(""), st.text(  # a header cannot hold a line break
    st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40))


def signature_for(url: str, body: bytes) -> str:
    """What Twilio would sign: the fields exactly as the app reads them (werkzeug's form
    parsing), signed by twilio's own library, so strange bodies reach the service."""
    environ = EnvironBuilder(method="POST", data=body, content_type=FORM).get_environ()
    fields = Request(environ).form
    return str(RequestValidator(TWILIO_TOKEN).compute_signature(url, fields))


def post_twilio(client: FlaskClient, path: str, body: bytes, content_type: str,
                signed: bool, wrong: str | None, query: str = "") -> TestResponse:
    url = PUBLIC_URL + path + (f"?{query}" if query else "")
    headers = {}
    if signed:
        headers["X-Twilio-Signature"] = signature_for(url, body)
    elif wrong is not None:
        headers["X-Twilio-Signature"] = wrong
    return client.post(path, data=body, content_type=content_type, headers=headers,
                       base_url=PUBLIC_URL, query_string=query)


def assert_twiml(response: TestResponse) -> None:
    if response.status_code == 200:
        assert response.mimetype == "text/xml"
        root = ET.fromstring(response.get_data())  # well-formed, or this raises
        assert root.tag == "Response"
        assert all(child.tag == "Message" for child in root)


def test_strangers_post_anything_to_twilio_messages(
        client: FlaskClient, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    cases = Cases("twilio /messages", capsys)

    @fuzz_settings(300)
    @given(pairs=weighted((3, twilio_message()), (1, ANY_FORM)),
           junk=weighted((4, st.just(b"")), (1, st.binary(max_size=40))),
           content_type=CONTENT_TYPE, signed=SIGNED, wrong=SIGNATURE)
    def fuzz(pairs: list[tuple[Piece, Piece]], junk: bytes, content_type: str, signed: bool,
             wrong: str | None) -> None:
        cases()
        body = form_body(pairs, junk)
        response = checked(engine, lambda: post_twilio(client, "/twilio/messages", body,
                                                       content_type, signed, wrong))
        cases.saw(response, "signed" if signed else "unsigned")
        if not signed:
            assert 400 <= response.status_code < 500
        assert_twiml(response)

    fuzz()
    cases.report()


@st.composite
def signing_with_strange_words(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A fresh supporter going through signing, one of their answers strange: the bot
    echoes names and postcodes back, so strange text reaches the replies too."""
    script = ["Hi", "SIGN", "YES", "Amira Khan", "SW1A 1AA", "YES", "NO", "VOICE"]
    at = draw(st.integers(0, len(script) - 1))
    script[at] = draw(ANY_TEXT)
    if draw(st.booleans()):
        script.insert(draw(st.integers(0, len(script))), draw(ANY_TEXT))
    number = f"+447{draw(st.integers(0, 10**9 - 1)):09d}"
    channel = draw(st.sampled_from(["", "whatsapp:"]))
    return channel + number, script


def test_supporters_answer_with_strange_words_and_get_well_formed_twiml(
        client: FlaskClient, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    cases = Cases("twilio conversations", capsys)

    @fuzz_settings(40)
    @given(signing_with_strange_words())
    def fuzz(conversation: tuple[str, list[str]]) -> None:
        cases()
        sender, script = conversation
        for text in script:
            sid = "SM" + secrets.token_hex(16)
            body = form_body([("MessageSid", sid), ("From", sender), ("Body", text),
                              ("To", "+447700900000"), ("AccountSid", TWILIO_SID)])
            response = checked(engine, partial(post_twilio, client, "/twilio/messages", body,
                                               FORM, True, None))
            cases.saw(response)
            assert_twiml(response)

    fuzz()
    cases.report()


@pytest.fixture
def deliveries(client: FlaskClient, sessions: sessionmaker[Session], config: Config) -> list[int]:
    """A signer, and three of our sends to them still `sending`: reports may settle them."""
    signer(client, "+447700900123", "Amira Khan", "EH1 1AA")
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", "News.", "editor@planets.example")
        draft.status = "sending"
        identity = session.scalar(select(Identity.id))
        made = [Delivery(announcement_id=draft.id, identity_id=identity, channel="sms",
                         status="sending", created_at=dt.datetime.now(dt.UTC))]
        session.add_all(made)
        session.flush()
        return [d.id for d in made]


DELIVERY_ID = weighted(
    (3, st.integers(-2, 3).map(str)),  # ours (1) and ids no row has
    (3, st.sampled_from(["12345678901234567890", "9223372036854775807", "9223372036854775808",
                         "18446744073709551616", "9" * 5000])),  # past any 64-bit key
    (1, st.integers(2**62, 2**70).map(str)),
    (1, st.sampled_from(["", "00", "+1", "1.0", "1e3", "0x1", "\u0663", "\uff11", " 1", "1 "])),
    (1, STRANGE_TEXT))


def test_strangers_post_anything_to_twilio_status(
        client: FlaskClient, engine: Engine, deliveries: list[int],
        capsys: pytest.CaptureFixture[str]) -> None:
    cases = Cases("twilio /status", capsys)
    statuses = ["queued", "sending", "sent", "delivered", "read", "undelivered", "failed",
                "DELIVERED", "received", ""]

    @fuzz_settings(200)
    @given(sid=SID, status=weighted((4, st.sampled_from(statuses)), (1, STRANGE_TEXT)),
           error=st.one_of(st.none(), st.sampled_from(["30003", "21610", "63016"]), ANY_TEXT),
           to=FROM, extra=st.lists(st.tuples(FIELD_NAME, PIECE), max_size=4),
           delivery=weighted((1, st.none()), (6, DELIVERY_ID)), raw_query=st.booleans(),
           content_type=CONTENT_TYPE, signed=SIGNED, wrong=SIGNATURE)
    def fuzz(sid: str, status: str, error: str | None, to: str,
             extra: list[tuple[Piece, Piece]], delivery: str | None, raw_query: bool,
             content_type: str, signed: bool, wrong: str | None) -> None:
        cases()
        pairs: list[tuple[Piece, Piece]] = [("MessageSid", sid), ("MessageStatus", status),
                                            ("To", to), ("AccountSid", TWILIO_SID), *extra]
        if error is not None:
            pairs.append(("ErrorCode", error))
        query = ""
        if delivery is not None:
            value = delivery.encode("utf-8", "surrogatepass")
            query = "d=" + (value.decode("latin-1") if raw_query and value.isascii()
                            else quote(value, safe=""))
        body = form_body(pairs)
        response = checked(engine, lambda: post_twilio(client, "/twilio/status", body,
                                                       content_type, signed, wrong, query))
        cases.saw(response, "signed" if signed else "unsigned")
        if not signed:
            assert 400 <= response.status_code < 500
        assert response.status_code in (204, 400, 403, 413)

    fuzz()
    cases.report()


# Telegram ----------------------------------------------------------------------------------

@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def telegram_client(settings: Settings, fake_telegram: FakeTelegram) -> Iterator[FlaskClient]:
    """The app with Telegram on, its replies going to the fake Bot API on loopback."""
    from webhooks import create_app

    app = create_app(dataclasses.replace(
        settings, telegram_bot_token=fake_telegram.token, telegram_webhook_secret=SECRET,
        telegram_api_base_url=fake_telegram.base_url))
    app.config["TESTING"] = True
    try:
        yield app.test_client()
    finally:
        app.extensions["petitionbot"].telegram.close()
        app.extensions["petitionbot"].engine.dispose()


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**80, 2**80),
                      st.floats(), ANY_TEXT)
ANY_JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(
        st.sampled_from(["update_id", "message", "callback_query", "chat", "from", "id", "text",
                         "type", "data", "contact", "date", "message_id", "is_bot",
                         "first_name", "phone_number", "user_id", "caption", "entities"]),
        STRANGE_TEXT), inner, max_size=5)), max_leaves=20)
CHAT_ID = st.one_of(st.integers(1, 2**31), st.sampled_from([5, 876543210, -1001234567890,
                                                            2**52, 2**63 - 1, 2**63, 2**64]),
                    JSON_LEAF)
UPDATE_IDS = iter(range(1, 10**9))


@st.composite
def near_valid_update(draw: st.DrawFn) -> dict[str, Any]:
    """An update Telegram could send, with strange text, ids or a field that is off."""
    chat_id = draw(CHAT_ID)
    user = {"id": chat_id, "is_bot": draw(st.sampled_from([False, False, True, "no"])),
            "first_name": draw(STRANGE_TEXT)}
    chat = {"id": chat_id, "type": draw(st.sampled_from(["private"] * 5 + ["group", "x", 5])),
            "first_name": "Amira"}
    message: dict[str, Any] = {"message_id": draw(st.integers(1, 10**6)), "date": 0,
                               "chat": chat, "from": user}
    kind = draw(st.sampled_from(["text", "text", "caption", "contact", "press", "empty"]))
    if kind == "text":
        message["text"] = draw(st.one_of(BODY_TEXT, JSON_LEAF))
    elif kind == "caption":
        message["caption"] = draw(BODY_TEXT)
    elif kind == "contact":
        message["contact"] = {"phone_number": draw(st.one_of(FROM, JSON_LEAF)),
                              "first_name": "Amira",
                              "user_id": draw(st.one_of(st.just(chat_id), CHAT_ID))}
    update_id = draw(st.one_of(st.just(next(UPDATE_IDS)), st.integers(-5, 2**64), JSON_LEAF))
    if kind == "press":
        bot_message = {"message_id": 1, "date": 0, "chat": chat, "text": "Choose",
                       "from": {"id": 123456, "is_bot": True, "first_name": "Petition Bot"}}
        return {"update_id": update_id, "callback_query": {
            "id": draw(st.one_of(st.text(max_size=10), JSON_LEAF)), "from": user,
            "chat_instance": "1", "message": bot_message,
            "data": draw(st.one_of(st.sampled_from(KEYWORDS), STRANGE_TEXT, JSON_LEAF))}}
    update: dict[str, Any] = {"update_id": update_id, "message": message}
    if draw(st.integers(0, 5)) == 0:  # one field replaced by anything
        target = draw(st.sampled_from([update, message, chat, user]))
        target[draw(st.sampled_from(sorted(target)))] = draw(ANY_JSON)
    return update


def json_body(value: Any, ascii_only: bool) -> bytes:
    """JSON as a client would send it: lone surrogates as \\ud800 escapes (ascii_only), or
    written raw (surrogatepass: invalid UTF-8)."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


def test_strangers_post_anything_to_the_telegram_webhook(
        telegram_client: FlaskClient, engine: Engine, fake_telegram: FakeTelegram,
        capsys: pytest.CaptureFixture[str]) -> None:
    cases = Cases("telegram /webhook", capsys)

    @fuzz_settings(300)
    @given(update=st.one_of(near_valid_update(), near_valid_update(), ANY_JSON,
                            st.dictionaries(st.sampled_from(["update_id", "message",
                                                             "callback_query", "edited_message",
                                                             "my_chat_member", "x"]),
                                            ANY_JSON, min_size=1)),
           ascii_only=st.booleans(), mangle=st.sampled_from([None] * 6 + ["cut", "junk"]),
           secret=st.sampled_from([SECRET] * 8 + [None, "", "wrong", SECRET + " "]))
    def fuzz(update: Any, ascii_only: bool, mangle: str | None, secret: str | None) -> None:
        cases()
        body = json_body(update, ascii_only)
        if mangle == "cut":
            body = body[:len(body) // 2]
        elif mangle == "junk":
            body += b"\xff\x00"
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        response = checked(engine, lambda: telegram_client.post(
            "/telegram/webhook", data=body, content_type="application/json", headers=headers))
        cases.saw(response, "secret" if secret == SECRET else "no secret")
        if secret == SECRET:
            assert response.status_code in (200, 413), response.status_code
        else:
            assert response.status_code == 403

    fuzz()
    cases.report()


def test_telegram_supporters_answer_with_strange_words(
        telegram_client: FlaskClient, engine: Engine, fake_telegram: FakeTelegram,
        capsys: pytest.CaptureFixture[str]) -> None:
    cases = Cases("telegram conversations", capsys)

    @fuzz_settings(40)
    @given(conversation=signing_with_strange_words(), chat_id=st.integers(1, 2**40))
    def fuzz(conversation: tuple[str, list[str]], chat_id: int) -> None:
        cases()
        _, script = conversation
        for text in ["/start", *script[1:]]:
            update = fake_telegram.user_sends(chat_id, "x", queue=False)
            update["message"]["text"] = text
            response = checked(engine, partial(
                telegram_client.post, "/telegram/webhook", data=json_body(update, True),
                content_type="application/json",
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}))
            cases.saw(response)
            assert response.status_code in (200, 413)

    fuzz()
    cases.report()


# The staff console -------------------------------------------------------------------------

@pytest.fixture
def admin(app: Flask, client: FlaskClient, sessions: sessionmaker[Session], config: Config,
          tmp_path: Path) -> Browser:
    """An admin's browser, logged in, and something for every console route to act on: a
    signer with a pending voice, and an editor's draft."""
    app.config.update(STAFF_CACHE_SECONDS=0,
                      STAFF_SIMULATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'simulator.db'}")
    add_people(sessions)
    signer(client, "+447700900123", "Amira Khan", "EH1 1AA")
    with sessions.begin() as session:
        supporter = session.scalar(select(Supporter.id))
        petition = session.scalar(select(Petition.id))
        assert supporter is not None and petition is not None
        session.add(Voice(petition_id=petition, supporter_id=supporter, text="For my mum.",
                          nation="scotland", status="pending", publish_consent=True,
                          flagged=False, created_at=dt.datetime.now(dt.UTC)))
        broadcast.create(session, config, "sirt", "The petition goes to NHS England.",
                         email_of("editor"))
    browser = Browser(app.test_client())
    assert browser.login(email_of("admin")).status_code == 302
    return browser


def console_posts(app: Flask) -> list[str]:
    """Every console rule that takes a POST, but logging out (it would end the session the
    other cases need; it takes no fields)."""
    return sorted(rule.rule for rule in app.url_map.iter_rules()
                  if "POST" in (rule.methods or ()) and rule.endpoint.startswith("staff.")
                  and rule.endpoint != "staff.logout")


ARGUMENT = re.compile(r"<(?:[^:<>]+:)?[^<>]+>")
PATH_ARG = weighted((8, st.just("1")), (2, st.integers(0, 4).map(str)), (1, st.sampled_from(
    ["sms", "whatsapp", "telegram", "2147483648", "9223372036854775807", "9223372036854775808",
     "12345678901234567890", "9" * 400, "-1", "%00", "%ED%A0%80", "x"])),
    (1, STRANGE_TEXT.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe=""))))
CONSOLE_FIELDS = ["text", "channels", "nations", "areas", "test_group", "template_sid", "when",
                  "at", "confirm", "email", "password", "press", "reason", "csrf_token"]
CONSOLE_VALUE = weighted((2, st.sampled_from(
    ["sms", "whatsapp", "telegram", "england", "scotland", "now", "later", "2030-01-01T10:00",
     "ERASE", "y", "on", "EH, G", "HX" + "0" * 32, "SHARE_PHONE", "admin@planets.example"])),
    (1, PIECE))


def test_staff_post_anything_to_every_console_form(
        app: Flask, admin: Browser, engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    rules = console_posts(app)
    assert len(rules) >= 10, rules
    token = admin.token()
    cases = Cases(f"console POST ({len(rules)} routes)", capsys)

    @fuzz_settings(300)
    @given(rule=st.sampled_from(rules), args=st.lists(PATH_ARG, min_size=2, max_size=2),
           fields=st.lists(st.tuples(weighted((6, st.sampled_from(CONSOLE_FIELDS)), (1, PIECE)),
                                     CONSOLE_VALUE), max_size=8),
           csrf=st.sampled_from(["valid", "valid", "valid", "none", "wrong"]),
           accept=st.sampled_from(["text/html", "application/json", "*/*"]),
           login=st.one_of(st.none(), st.tuples(st.sampled_from(
               ["admin@planets.example", "nobody@planets.example", "ADMIN@planets.example "]),
               st.one_of(st.just("wrong password"), STRANGE_TEXT))))
    def fuzz(rule: str, args: list[str], fields: list[tuple[Piece, Piece]], csrf: str,
             accept: str, login: tuple[str, str] | None) -> None:
        cases()
        if login is not None:  # a whole login form, to the login page or wherever it goes
            rule = rule if rule.startswith("/staff/login") or len(fields) % 2 else "/staff/login"
            fields = [("email", login[0]), ("password", login[1]), *fields[:2]]
        spare = iter(args)
        path = ARGUMENT.sub(lambda _: next(spare), rule)
        pairs = [pair for pair in fields if pair[0] != "csrf_token"] if csrf != "wrong" else [
            *fields, ("csrf_token", "wrong")]
        if csrf == "valid":
            pairs.append(("csrf_token", token))
        body = form_body(pairs)
        response = checked(engine, lambda: admin.client.post(
            path, data=body, content_type=FORM, base_url=CONSOLE,
            headers={"Referer": CONSOLE + "/staff/", "Accept": accept},
            environ_base={"REMOTE_ADDR": admin.ip}))
        cases.saw(response, f"csrf {csrf}")
        if csrf == "none":
            assert 400 <= response.status_code < 500, response.status_code

    fuzz()
    cases.report()
