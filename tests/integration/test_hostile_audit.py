"""An audit of issue #12 against DESIGN §8, where the tests written with its fixes left a
gap: Redis away while supporters sign, stop and start; the number of web processes
`petitionbot serve` starts; every id and every word in a console or API URL's path, and
text no database holds in any route's query or form; every provider's webhook while
another program holds SQLite's write lock; names in any script, by SMS and with the
joiners some scripts spell with; the login backstop against a device its owner signed in
on; a provider's retries, which must spend none of the reply budget on any process; the
second approval across the console and the API; and what another web process shows of a
person right after they say STOP or are erased. On SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell import unit_of_work
from models import Announcement, Delivery, InboundMessage, Signature, Supporter
from tests.conftest import PUBLIC_URL, TWILIO_SID
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.api_helpers import API, issue_tokens
from tests.integration.console_helpers import add_people, email_of
from tests.integration.test_console import browser, console_setup, draft_by, write_config
from tests.integration.test_fuzz_http import snapshot
from tests.integration.twilio_helpers import Texter, post, replies, sign, signs

ROOT = Path(__file__).resolve().parents[2]
AMIRA = "+447700900123"
OVER_BUDGET = "pause our replies"
HUGE = "99999999999999999999"  # 20 digits: more than any database integer holds
# An id in a route: the console's <id:...> and the API's <int(...):...>.
ID_ARGUMENT = re.compile(r"<(?:id|int(?:\([^)]*\))?):\w+>")
ANY_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?\w+>")
# What no database can hold, spelled as a client would put it in a URL's path.
UNSTORABLE_WORDS = ["a%00b", "%00", "%ED%A0%80", "%EF%BF%BF", "x" * 3000]
TELEGRAM_SECRET = "audit-webhook-secret"


def with_budget(settings: Settings, folder: Path, replies: int) -> Settings:
    """The suite's settings with a config whose [abuse] budget is `replies` per window."""
    text = Path(settings.config_path).read_text(encoding="utf-8")
    assert "replies_per_window = 40" in text
    text = text.replace("replies_per_window = 40", f"replies_per_window = {replies}")
    path = folder / f"budget-{replies}.toml"
    path.write_text(text, encoding="utf-8")
    return dataclasses.replace(settings, config_path=str(path))


def started(settings: Settings) -> Iterator[Flask]:
    """A web process on `settings`: its own app, service, engine and memory."""
    from webhooks import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["petitionbot"].engine.dispose()


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# Item 2: Redis is an accelerator, never a single point of failure -------------------------

@pytest.fixture
def redis_down(settings: Settings) -> Iterator[Flask]:
    """A web process whose REDIS_URL names a port nothing listens on."""
    yield from started(dataclasses.replace(settings, redis_url="redis://127.0.0.1:9/0"))


def test_with_redis_unreachable_supporters_sign_stop_and_start_on_both_channels(
        redis_down: Flask, sessions: sessionmaker[Session]) -> None:
    client = redis_down.test_client()
    transcript = signs(Texter(client, AMIRA), "Amira Khan", "SW1A 1AA")
    assert "Your signature is number 1 here" in "\n".join(transcript[-2])
    assert count(sessions, Signature) == 1
    bronwen = Texter(client, "+447700900124", "whatsapp")
    assert "Hello from PLANETS" in bronwen.says("Hi")[0]
    assert "no more messages" in bronwen.says("STOP")[0]
    assert bronwen.says("Hi") == []
    assert bronwen.says("START")
    health = client.get("/healthz")
    assert (health.status_code, health.get_json()["redis"]) == (200, "unreachable")


def test_with_redis_unreachable_the_worker_paces_its_sends_alone() -> None:
    """The send pace is Redis's one job: while it is away each worker paces on its own
    (slots still spaced, at most the rate admitted in a second), and nothing raises."""
    from bot.infra.pacing import RedisPacer

    pacer = RedisPacer({"sms": 10}, "redis://127.0.0.1:9/0")
    slots = [pacer.reserve("sms") or 0.0 for _ in range(3)]
    assert slots[0] == 0.0 < slots[1] < slots[2]
    admitted = [pacer.admit("sms") for _ in range(11)]
    assert admitted[:10] == [0.0] * 10 and admitted[10] > 0
    assert pacer.down


# Item 6: `petitionbot serve` and gunicorn.conf.py start the same web processes ---------------

@pytest.mark.parametrize("cores", [1, 2, 4])
def test_serve_starts_as_many_web_processes_as_gunicorn_conf_py(
        cores: int, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """One rule for both (bot.infra.settings.web_processes): `serve` once started two
    processes on SQLite, where gunicorn.conf.py started one."""
    from bot.entry import cli

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)),
                        raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PETITIONBOT_CONFIG", settings.config_path)
    served: list[int] = []
    monkeypatch.setattr(cli, "_serve", lambda host, port, workers, threads: served.append(
        workers))
    result = CliRunner().invoke(cli.main, ["serve"])
    assert result.exit_code == 0, result.output
    namespace: dict[str, object] = {}
    exec(compile((ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"),
         namespace)
    assert served == [namespace["workers"]]


# Item 7: every id in a console or API URL -------------------------------------------------

@pytest.fixture
def console(app: Flask, tmp_path: Path) -> Flask:
    return console_setup(app, tmp_path)


@pytest.fixture
def staff_ids(sessions: sessionmaker[Session], console: Flask) -> dict[str, int]:
    return add_people(sessions)


def routes(app: Flask, prefix: str, argument: re.Pattern[str]) -> list[tuple[str, str]]:
    """(method, rule) of every route under `prefix` with an argument `argument` matches."""
    return sorted((method, rule.rule) for rule in app.url_map.iter_rules()
                  if rule.rule.startswith(prefix) and argument.search(rule.rule)
                  and not rule.rule.startswith("/staff/static/")
                  for method in (rule.methods or set()) - {"HEAD", "OPTIONS"})


def filled(rule: str, word: str, ids: str) -> str:
    """The rule's path with every id argument `ids` and every other argument `word`."""
    return ANY_ARGUMENT.sub(lambda m: ids if ID_ARGUMENT.fullmatch(m.group(0)) else word, rule)


def send(client: FlaskClient, method: str, path: str, base_url: str,
         headers: dict[str, str] | None = None) -> TestResponse:
    api = path.startswith("/api/v1")
    body: dict[str, Any] = {"json": {}} if api and method != "GET" else {"data": {"when": "now"}}
    return client.open(path, method=method, base_url=base_url, headers=headers or {},
                       environ_base={"REMOTE_ADDR": "192.0.2.10"},
                       **(body if method != "GET" else {}))


def test_every_console_and_api_route_answers_an_id_no_database_holds_with_a_404(
        console: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    """Generated from the URL map, so a route added later is held to it too."""
    admin = browser(console, "admin")
    token = issue_tokens(sessions, staff_ids)["admin"]
    checked = []
    for prefix, base, headers in (("/staff/", "https://console.example.org", {}),
                                  ("/api/", API, {"Authorization": f"Bearer {token}"})):
        found = routes(console, prefix, ID_ARGUMENT)
        assert found, prefix
        for method, rule in found:
            for number in (HUGE, str(2**63)):
                path = filled(rule, "sms", ids=number)
                client = admin.client if prefix == "/staff/" else console.test_client()
                response = send(client, method, path, base, headers)
                checked.append((method, path[:60], response.status_code))
    assert [c for c in checked if c[2] != 404] == []
    assert len(checked) >= 60


# Items 1 and 7, "Also": text no database can hold, in a URL's path -------------------------

# A word in a route's path (a slug, a text's key, an invitation, a channel).
WORD_ARGUMENT = re.compile(r"<(?!id:|int)(?:string:)?\w+>")


def unstorable_paths(console: Flask, sessions: sessionmaker[Session], engine: Engine,
                     staff_ids: dict[str, int]) -> list[tuple[str, str, str, int, bool]]:
    """(method, rule, word, status, nothing stored changed) for every console, staff API
    and public route that has a word in its path, given each of UNSTORABLE_WORDS, as an
    admin (a valid token, CSRF off)."""
    admin = browser(console, "admin")
    token = issue_tokens(sessions, staff_ids)["admin"]
    bearer = {"Authorization": f"Bearer {token}"}
    # The token's first use is written (last_used_at, then at most once a minute): first.
    assert console.test_client().get("/api/v1/petitions", base_url=API,
                                     headers=bearer).status_code == 200
    answers = []
    for prefix, base, headers in (("/staff/", "https://console.example.org", {}),
                                  ("/api/", API, bearer)):
        found = routes(console, prefix, WORD_ARGUMENT)
        assert found, prefix
        for method, rule in found:
            for word in UNSTORABLE_WORDS:
                path = filled(rule, word, ids="1")
                client = admin.client if prefix == "/staff/" else console.test_client()
                before = snapshot(engine)
                response = send(client, method, path, base, headers)
                answers.append((method, rule, word[:12], response.status_code,
                                snapshot(engine) == before))
    return answers


def refused_unchanged(answers: list[tuple[str, str, str, int, bool]]) -> list[Any]:
    """The answers that were not a 4xx leaving every stored row as it was."""
    return [a for a in answers if not (400 <= a[3] < 500 and a[4])]


def test_text_no_database_can_hold_in_a_url_path_is_a_4xx_that_changes_nothing(
        console: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        engine: Engine) -> None:
    """Every console, staff API and public route with a word in its path (a slug, a text's
    key, an invitation, a channel), given a NUL, a lone surrogate, a non-character or a
    huge word: a 4xx, never a database error, and nothing stored changes. On PostgreSQL a
    NUL in a petition's slug once made its close, reopen and restore actions a 500."""
    answers = unstorable_paths(console, sessions, engine, staff_ids)
    assert len(answers) >= 50
    assert refused_unchanged(answers) == []
    assert {a[1] for a in answers} >= {
        "/staff/petitions/<slug>/close", "/staff/petitions/<slug>/reopen",
        "/staff/petitions/<slug>/versions/<id:number>/restore"}


def every_route(app: Flask) -> list[tuple[str, str]]:
    """(method, rule) of every route but the console's static files."""
    return routes(app, "/", re.compile(""))


def test_a_nul_in_a_query_or_a_form_is_a_400_naming_it_on_every_route(
        console: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        engine: Engine) -> None:
    """One rule before every view (webhooks/guards.py), so a route added later is held to
    it too: a query parameter holding what no database can, on any route, and a form field
    on any route but the providers' webhooks (whose text is cleaned and answered), are a
    400 that names the field, as JSON where the route answers JSON, and change nothing."""
    admin = browser(console, "admin")
    token = issue_tokens(sessions, staff_ids)["admin"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert console.test_client().get("/api/v1/petitions", base_url=API,
                                     headers=bearer).status_code == 200
    answers = []
    for method, rule in every_route(console):
        path = filled(rule, "sirt", ids="1")
        staff = rule.startswith("/staff/")
        client = admin.client if staff else console.test_client()
        base = API if rule.startswith("/api/v1") else "https://console.example.org"
        provider = rule.startswith(("/twilio/", "/telegram/"))
        # A NUL in a name, a non-character (U+FFFF) in a value: what a browser may send.
        for query, form in ((f"{path}?q=a%00b", "when=now"),
                            (path, None if provider or method == "GET" else
                             "when=now&what%00=x&q=a%EF%BF%BF")):
            if form is None:
                continue
            before = snapshot(engine)
            body: dict[str, Any] = {} if method == "GET" else {
                "data": form, "content_type": "application/x-www-form-urlencoded"}
            response = client.open(query, method=method, base_url=base, headers=bearer,
                                   environ_base={"REMOTE_ADDR": "192.0.2.10"}, **body)
            said = response.get_data(as_text=True)
            named = not response.is_json or staff or (
                response.get_json().get("field") in ("q", "what"))
            answers.append((method, rule, response.status_code,
                            "holds characters that cannot be stored" in said and named,
                            response.is_json == (not staff or rule.endswith(".json")),
                            snapshot(engine) == before))
    assert len(answers) >= 100
    wrong = [a for a in answers if a[2:] != (400, True, True, True)]
    assert wrong == [], "\n".join(map(str, wrong))


# Item 7: SQLite's write lock held by another program --------------------------------------

STAFF_CHAT = 4242  # a Telegram user in [staff] telegram_ids


@pytest.fixture
def providers(settings: Settings, tmp_path: Path) -> Iterator[tuple[Flask, FakeTelegram]]:
    """A web process with Twilio and Telegram (a fake Bot API on loopback), whose config
    lets STAFF_CHAT use the staff commands."""
    text = Path(settings.config_path).read_text(encoding="utf-8")
    assert text.count("telegram_ids = []") == 1
    path = tmp_path / "staff-chat.toml"
    path.write_text(text.replace("telegram_ids = []", f"telegram_ids = [{STAFF_CHAT}]"),
                    encoding="utf-8")
    with FakeTelegram() as fake:
        for app in started(dataclasses.replace(
                settings, config_path=str(path), telegram_bot_token=fake.token,
                telegram_webhook_secret=TELEGRAM_SECRET, telegram_api_base_url=fake.base_url)):
            yield app, fake
            app.extensions["petitionbot"].telegram.close()


def provider_requests(fake: FakeTelegram) -> dict[str, Callable[[FlaskClient], TestResponse]]:
    """One request of each kind every provider's webhook takes, by what it is."""
    sms = Texter.payload(Texter(None, AMIRA), "Hi")  # type: ignore[arg-type]
    report = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "To": AMIRA,
              "AccountSid": TWILIO_SID}
    telegram = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    update = fake.user_sends(5550001, "Hi", queue=False)
    command = fake.user_sends(STAFF_CHAT, "/stats", queue=False)
    return {
        "/twilio/messages": lambda client: post(client, sms),
        "/twilio/status": lambda client: client.post(
            "/twilio/status", data=report, base_url=PUBLIC_URL, query_string="d=1",
            headers={"X-Twilio-Signature": sign(report, url=f"{PUBLIC_URL}/twilio/status?d=1")}),
        "/telegram/webhook": lambda client: client.post(
            "/telegram/webhook", json=update, headers=telegram),
        "/telegram/webhook (a staff command)": lambda client: client.post(
            "/telegram/webhook", json=command, headers=telegram),
    }


def test_with_the_sqlite_write_lock_held_every_provider_webhook_answers_503_in_patience(
        providers: tuple[Flask, FakeTelegram], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Twilio gives up on any webhook after 15 s, delivery reports included: whatever a
    provider's webhook reads or writes (a message, a report, a staff command), it waits
    for SQLite's write lock no longer than a message does (INBOUND_PATIENCE), not SQLite's
    30 s, and answers 503, which the provider retries; the retry then works."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's own write lock")
    app, fake = providers
    requests = provider_requests(fake)
    webhooks = {rule for _, rule in every_route(app) if rule.startswith(("/twilio/",
                                                                          "/telegram/"))}
    assert webhooks == {what.split(" ")[0] for what in requests}  # every one, tried below
    monkeypatch.setattr(unit_of_work, "INBOUND_PATIENCE", 0.3)
    answered: dict[str, int] = {}

    def answer(what: str) -> None:
        answered[what] = requests[what](app.test_client()).status_code

    holder = sqlite3.connect(Path(settings.database_url.removeprefix("sqlite:///")),
                             isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # e.g. the sqlite3 shell, outside the app's lock
    threads = [threading.Thread(target=answer, args=(what,)) for what in requests]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=8)  # far past their patience, short of Twilio's 15 s
        late = [what for what, thread in zip(requests, threads, strict=True)
                if thread.is_alive()]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        for thread in threads:
            thread.join()
    assert late == [], "waited past Twilio's timeout"
    assert answered == dict.fromkeys(requests, 503)
    retried = {what: send(app.test_client()).status_code for what, send in requests.items()}
    assert retried == {"/twilio/messages": 200, "/twilio/status": 204,
                       "/telegram/webhook": 200, "/telegram/webhook (a staff command)": 200}
    assert any("Hello from PLANETS" in m["text"] for m in fake.messages_to(5550001))
    assert fake.messages_to(STAFF_CHAT)


# Item 7: names in other scripts, and the zero-width characters some of them need ----------

def review_of(texter: Texter, name: str) -> str:
    """The review's line with the name (or what the bot said instead)."""
    for body in ("Hi", "SIGN", "YES"):
        assert texter.says(body)
    asked = "\n".join(texter.says(name))
    if "postcode" not in asked:
        return asked
    review = "\n".join(texter.says("SW1A 1AA"))
    return next(line for line in review.splitlines() if line.startswith("Name:"))


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_a_persian_name_with_a_zero_width_non_joiner_is_accepted(
        client: FlaskClient, sessions: sessionmaker[Session], channel: str) -> None:
    """The joiner is part of the name's spelling (مهدی‌زاده is one word, its halves not
    joined): kept where it is, never a space, and the name is accepted; SMS spells it
    without the joiner."""
    name = "علی مهدی\u200cزاده"
    said = review_of(Texter(client, AMIRA, channel), name)
    assert said == ("Name: 'ly mhdyzdh" if channel == "sms" else f"Name: {name}"), said
    assert "Your signature is number 1" in "\n".join(Texter(client, AMIRA, channel).says("YES"))
    with sessions() as session:
        assert session.scalars(select(Signature.name)).all() == [name]


@pytest.mark.parametrize(("name", "spelled"), [
    ("राम शर्मा", "ram srma"), ("علي حسن", "'ly hsn"), ("张伟", "ZhangWei"),
    ("ஸ்ரீ ராம்", "sri ram"), ("穆罕默德·阿里", "MuHanMoDe.ALi"),
    ("ジョン・スミス", "jiyon.sumisu"), ("Núria Gil·la", "Nuria Gil.la"),
])
def test_a_name_in_any_script_comes_back_by_sms_without_question_marks(
        client: FlaskClient, name: str, spelled: str) -> None:
    """Spelled as a reader of Latin would (anyascii), vowel signs included, in GSM-7."""
    assert review_of(Texter(client, AMIRA), name) == f"Name: {spelled}"


# Item 7: the account's backstop never locks its owner out of a device she signed in on ----

SHE, ELSEWHERE = "192.0.2.10", "203.0.113.77"  # her office, and a train's wifi


@pytest.fixture
def backstop_of_fifteen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The account's limit reached from three addresses (5 guesses each, the pair's brake),
    rather than the ten that its real 50 takes."""
    from bot.shell import throttle

    monkeypatch.setattr(throttle, "ACCOUNT", throttle.Limit("login-account", 15, 3600))


def locked_out_by_strangers(console: Flask) -> None:
    """Strangers guess the admin's password from three addresses until the account's
    backstop refuses even the right password from a browser she never used."""
    for n in range(3):
        stranger = browser(console, ip=f"198.51.100.{n + 20}")
        answers = [stranger.login(email_of("admin"), f"guess {i}").status_code
                   for i in range(6)]
        assert answers == [401] * 5 + [429]
    assert browser(console, ip=SHE).login(email_of("admin")).status_code == 429


def test_strangers_who_lock_the_account_from_three_addresses_do_not_lock_her_device_out(
        console: Flask, staff_ids: dict[str, int], backstop_of_fifteen: None) -> None:
    """OWASP's device cookies: the browser she signed in on before carries a signed cookie
    for her account, and its attempts count against that device alone."""
    hers = browser(console, ip=SHE)
    assert hers.login(email_of("admin")).status_code == 302
    assert hers.post("/staff/logout", {}).status_code == 302
    locked_out_by_strangers(console)
    hers.ip = ELSEWHERE  # her laptop, wherever she is
    assert hers.login(email_of("admin")).status_code == 302
    assert hers.get("/staff/").status_code == 200


def test_a_device_cookie_for_another_account_or_a_forged_one_does_not_help(
        console: Flask, staff_ids: dict[str, int], backstop_of_fifteen: None) -> None:
    from webhooks.console.auth import DEVICE_COOKIE

    editors = browser(console, "editor", ip=ELSEWHERE)  # a colleague's cookie, or a thief's
    cookie = editors.client.get_cookie(DEVICE_COOKIE, domain="console.example.org",
                                       path="/staff/login")
    assert cookie is not None and "@" not in cookie.decoded_value  # no email in it
    locked_out_by_strangers(console)
    assert editors.login(email_of("admin")).status_code == 429
    forged = browser(console, ip=ELSEWHERE)
    payload, _, signature = cookie.decoded_value.rpartition(".")
    forged.client.set_cookie(DEVICE_COOKIE, f"{payload}.{signature[::-1]}",
                             domain="console.example.org", path="/staff/login")
    assert forged.login(email_of("admin")).status_code == 429
    assert editors.login(email_of("editor")).status_code == 302  # still good for its own


def test_her_device_has_a_small_window_of_its_own(
        console: Flask, staff_ids: dict[str, int]) -> None:
    """A stolen cookie buys a thief no more guesses than the pair's brake; and what her
    device tries counts against nobody else's window."""
    hers = browser(console, "admin", ip=SHE)
    answers = [hers.login(email_of("admin"), f"typo {i}").status_code for i in range(6)]
    assert answers == [401] * 5 + [429]
    assert hers.login(email_of("admin")).status_code == 429  # until its window passes
    assert browser(console, ip=SHE).login(email_of("admin")).status_code == 302


# Item 7: a provider's retry gets the first answer and spends no budget, on any process -----

@pytest.fixture
def budget_of_three(settings: Settings, tmp_path: Path) -> Settings:
    return with_budget(settings, tmp_path, 3)


@pytest.fixture
def first(budget_of_three: Settings) -> Iterator[Flask]:
    yield from started(budget_of_three)


@pytest.fixture
def second(budget_of_three: Settings) -> Iterator[Flask]:
    yield from started(budget_of_three)


def test_a_providers_retries_get_the_first_answer_on_any_process_and_spend_no_budget(
        first: Flask, second: Flask, sessions: sessionmaker[Session]) -> None:
    amira = Texter(first.test_client(), AMIRA)
    hello = amira.payload("Hi")
    answer = replies(post(first.test_client(), hello))
    assert "Hello from PLANETS" in answer[0]
    for process in (first, second, first, second, second):  # Twilio retries, anywhere
        assert replies(post(process.test_client(), hello)) == answer
    assert count(sessions, InboundMessage) == 1
    said = [Texter(p.test_client(), AMIRA).says("MORE") for p in (second, first, second)]
    assert [OVER_BUDGET in s[0] for s in said] == [False, False, True]


# Item 3: the second approval across the console and the API -------------------------------

@pytest.fixture
def approval_settings(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(settings, config_path=str(write_config(tmp_path)))


@pytest.fixture
def approving(approval_settings: Settings, tmp_path: Path) -> Iterator[Flask]:
    for app in started(approval_settings):
        yield console_setup(app, tmp_path)


@pytest.mark.parametrize("edited_in", ["console", "api"])
def test_an_admin_who_edited_a_draft_anywhere_approves_it_nowhere(
        edited_in: str, approving: Flask, sessions: sessionmaker[Session],
        config: Config) -> None:
    staff = add_people(sessions)
    signs(Texter(approving.test_client(), AMIRA), "Amira Khan", "EH1 1AA", "YES")
    token = issue_tokens(sessions, staff)["admin"]
    api = {"base_url": API, "headers": {"Authorization": f"Bearer {token}"}}
    admin = browser(approving, "admin")
    draft = draft_by(sessions, config, email_of("editor"))
    words = {"text": "Donate to this account instead: 12345678."}
    if edited_in == "console":
        assert admin.post(f"/staff/announcements/{draft}/edit", words).status_code == 302
    else:
        assert approving.test_client().patch(f"/api/v1/announcements/{draft}", json=words,
                                             **api).status_code == 200
    admin.post(f"/staff/announcements/{draft}/approve", {"when": "now", "confirm": "yes"})
    refused = approving.test_client().post(f"/api/v1/announcements/{draft}/approve",
                                           json={}, **api)
    assert refused.status_code == 403
    with sessions() as session:
        found = session.get(Announcement, draft)
        assert found is not None and found.status == "draft"
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


# "Also": STOP and erasure take effect on every process at once ----------------------------

@pytest.fixture
def other(settings: Settings, tmp_path: Path) -> Iterator[Flask]:
    """Another web process on the same database, with the console."""
    for app in started(settings):
        yield console_setup(app, tmp_path)


def test_stop_and_erasure_on_one_process_hold_on_another_at_once(
        app: Flask, other: Flask, sessions: sessionmaker[Session], config: Config) -> None:
    add_people(sessions)
    here, there = Texter(app.test_client(), AMIRA), Texter(other.test_client(), AMIRA)
    signs(here, "Amira Khan", "EH1 1AA", "YES")
    admin = browser(other, "admin")
    with sessions() as session:
        supporter = session.scalar(select(Supporter.id))
    assert "Amira Khan" in admin.get(f"/staff/supporters?q={AMIRA}").get_data(as_text=True)
    assert admin.get(f"/staff/supporters/{supporter}").status_code == 200
    assert there.says("STATUS")  # the other process has read her, and may remember her

    assert here.says("STOP")
    assert there.says("Hi") == []  # silence, whichever process answers
    with sessions.begin() as session:
        stopped = broadcast_to_everyone(session, config)
    assert deliveries_of(sessions, stopped) == 0
    assert there.says("START")
    here.says("DELETE")
    assert "erased" in "\n".join(here.says("YES"))

    page = admin.get(f"/staff/supporters?q={AMIRA}").get_data(as_text=True)
    assert "Amira" not in page
    assert admin.get(f"/staff/supporters/{supporter}").status_code == 404
    assert other.test_client().get("/api/petitions/sirt").get_json()["counts"]["here"] == 0
    with sessions.begin() as session:
        erased = broadcast_to_everyone(session, config)
    assert deliveries_of(sessions, erased) == 0
    assert "Hello from PLANETS" in there.says("Hi")[0]  # a stranger to the bot again


def broadcast_to_everyone(session: Session, config: Config) -> int:
    """An announcement approved now, to every subscriber (its outbox written at once)."""
    from bot.shell import broadcast

    draft = broadcast.create(session, config, "sirt", "News.", email_of("editor"))
    broadcast.approve(session, config, draft, email_of("admin"),
                      draft.created_at, operator=True)
    return draft.id


def deliveries_of(sessions: sessionmaker[Session], announcement: int) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.announcement_id == announcement)) or 0
