"""The `petitionbot` commands that talk to Telegram, run as real processes against the fake
Bot API: long polling (signing end to end, clean shutdown), set-webhook, and the terminal
simulator showing Telegram's buttons (DESIGN §4, §8)."""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy import text as sql
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import CONFIG
from tests.e2e.telegram_chat import SECRET, keywords, signatures, step_of
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.e2e

KAI = 2001
LENA = 2002
MAX = 876543219  # distinctive: the logs must not show it
REPLY_WAIT = 20  # seconds: generous for a loaded CI machine; never asserted as a duration
EXIT_WAIT = 15


def petitionbot_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a deployment: only what these tests set, no proxies, no secrets."""
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith(("TELEGRAM_", "TWILIO_", "REDIS_",
                                                             "PUBLIC_BASE_URL", "DATABASE_"))}
    env.update(DATABASE_URL=database_url, PETITIONBOT_CONFIG=str(CONFIG), **extra)
    return env


def call_api(fake: FakeTelegram, method: str, **params: str) -> Any:
    """Call the fake Bot API directly, as another deployment of the bot would have."""
    request = urllib.request.Request(f"{fake.base_url}{fake.token}/{method}",
                                     data=json.dumps(params).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["result"]


def petitionbot(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot", *args]


@dataclass
class Poller:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stops_on(self, signum: int) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"telegram-poll still running {EXIT_WAIT}s after {signum!r}:\n"
                        f"{self.output()}")


@pytest.fixture
def poller(database_url: str, fake_telegram: FakeTelegram, tmp_path: Path) -> Iterator[Poller]:
    """`petitionbot telegram-poll` running against the fake, with a webhook set beforehand."""
    # A webhook left from an earlier deployment: polling must remove it to get updates.
    call_api(fake_telegram, "setWebhook", url="https://old.example.org/telegram/webhook")
    assert fake_telegram.webhook is not None
    log = tmp_path / "telegram-poll.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            petitionbot("telegram-poll"), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            env=petitionbot_env(database_url, TELEGRAM_BOT_TOKEN=fake_telegram.token,
                                TELEGRAM_API_BASE_URL=fake_telegram.base_url))
    running = Poller(process, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=EXIT_WAIT)


def replies_to(fake: FakeTelegram, poller: Poller, chat_id: int,
               count: int) -> list[dict[str, Any]]:
    """Wait until the bot has sent `count` messages to the chat in all; return them."""
    def arrived(f: FakeTelegram) -> list[dict[str, Any]] | None:
        sent = f.messages_to(chat_id)
        return sent if len(sent) >= count else None

    if poller.process.poll() is not None:
        pytest.fail(f"telegram-poll exited with {poller.process.returncode}:\n{poller.output()}")
    try:
        result: list[dict[str, Any]] = fake.wait_for(arrived, timeout=REPLY_WAIT)
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- telegram-poll output ---\n{poller.output()}") from None
    return result


def text(message: dict[str, Any]) -> str:
    return html.unescape(message["text"])


def test_kai_signs_by_buttons_through_long_polling_then_sigterm_stops_it(
        poller: Poller, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    steps: list[tuple[str, str, int, str]] = [
        # how   what           messages sent so far, the last one says (in part)
        ("type",  "/start",      2, "Share my phone number"),  # greeting, then the offer
        ("press", "SIGN",        3, "You must be 16 or over"),
        ("press", "YES",         4, "What is your full name?"),
        ("type",  "Kai Müller",  5, "Thanks, Kai Müller."),
        ("type",  "G1 1AA",      6, "Postcode: G1 1AA"),
        ("press", "YES",         8, "updates about this campaign"),
        ("press", "NO",          9, "OK, no updates"),
    ]
    for how, what, total, expected in steps:
        if how == "type":
            fake_telegram.user_sends(KAI, what, "Kai")
        else:
            with_button = next(m for m in reversed(fake_telegram.messages_to(KAI))
                               if what in keywords(m))
            fake_telegram.user_presses(KAI, what, with_button["message_id"])
        sent = replies_to(fake_telegram, poller, KAI, total)
        last = sent[-1]
        shown = text(last) + str(last.get("reply_markup"))
        assert expected in shown, f"{how} {what!r}: the bot said {shown!r}"

    sent = fake_telegram.messages_to(KAI)
    thanks = text(sent[6])
    assert "Your signature is number 1 here" in thanks
    assert "https://t.me/planets_petition_bot?start=SIRT_r1" in thanks
    assert keywords(sent[0]) == ["SIGN", "MORE", "INFO", "HELP"]
    assert keywords(sent[2]) == ["YES", "NO"]
    fake_telegram.wait_for(lambda f: len(f.answered_callbacks) == 4)
    fake_telegram.wait_for(lambda f: len(f.edits) == 4)
    [signature] = signatures(sessions)
    assert (signature.name, signature.postcode, signature.channel) == (
        "Kai Müller", "G1 1AA", "telegram")
    assert step_of(sessions, KAI) == "signed"

    assert fake_telegram.calls_to("deleteWebhook"), "polling must remove the webhook"
    assert fake_telegram.webhook is None
    assert poller.stops_on(signal.SIGTERM) == 0
    output = poller.output()
    for secret in (fake_telegram.token, "Kai Müller", "G1 1AA", str(KAI)):
        assert secret not in output, secret


def test_sigint_stops_long_polling_cleanly(poller: Poller, fake_telegram: FakeTelegram,
                                           sessions: sessionmaker[Session]) -> None:
    fake_telegram.user_sends(LENA, "hello", "Lena")
    [greeting, _offer] = replies_to(fake_telegram, poller, LENA, 2)
    assert text(greeting).startswith("Hello from PLANETS Cancer Charity")
    assert poller.stops_on(signal.SIGINT) == 0
    assert step_of(sessions, LENA) == "menu"
    assert "Traceback" not in poller.output()


def test_polling_confirms_each_update_once(poller: Poller, fake_telegram: FakeTelegram,
                                           sessions: sessionmaker[Session]) -> None:
    for words in ("hello", "SIGN", "YES"):
        fake_telegram.user_sends(LENA, words, "Lena")
    sent = replies_to(fake_telegram, poller, LENA, 4)
    assert "What is your full name?" in text(sent[-1])
    fake_telegram.wait_for(lambda f: not f.pending_updates)
    assert poller.stops_on(signal.SIGTERM) == 0
    assert len(fake_telegram.messages_to(LENA)) == 4  # nothing handled twice
    assert step_of(sessions, LENA) == "name"


def refuse_chat(engine: Engine, chat_id: int) -> None:
    """Make the database refuse any message from this chat (not unavailable: it refuses
    this one row, as it would a value it cannot hold)."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sql(f"""
                CREATE FUNCTION refuse_chat() RETURNS trigger AS $$ BEGIN
                  IF NEW.address = '{chat_id}' THEN
                    RAISE EXCEPTION 'refused' USING ERRCODE = '22000';  -- data_exception
                  END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql"""))
            connection.execute(sql("CREATE TRIGGER refuse_chat BEFORE INSERT ON identities "
                                   "FOR EACH ROW EXECUTE FUNCTION refuse_chat()"))
        else:
            connection.execute(sql(f"""
                CREATE TRIGGER refuse_chat BEFORE INSERT ON identities
                WHEN NEW.address = '{chat_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"""))


def test_a_message_the_database_refuses_does_not_hold_up_lenas(
        engine: Engine, poller: Poller, fake_telegram: FakeTelegram,
        sessions: sessionmaker[Session]) -> None:
    refuse_chat(engine, MAX)
    refused = fake_telegram.user_sends(MAX, "hello", "Max")
    fake_telegram.user_sends(LENA, "hello", "Lena")
    [greeting, _offer] = replies_to(fake_telegram, poller, LENA, 2)
    assert text(greeting).startswith("Hello from PLANETS Cancer Charity")
    fake_telegram.wait_for(lambda f: not f.pending_updates)  # both confirmed, none retried
    assert poller.stops_on(signal.SIGTERM) == 0
    assert fake_telegram.messages_to(MAX) == [] and step_of(sessions, MAX) is None
    output = poller.output()
    assert output.count(f"telegram update {refused['update_id']} dropped") == 1, output
    assert "retrying update" not in output
    for secret in ("Max", str(MAX), "hello"):
        assert secret not in output, secret


# telegram set-webhook ---------------------------------------------------------------------

def test_set_webhook_registers_the_public_url_with_the_secret(
        database_url: str, fake_telegram: FakeTelegram, tmp_path: Path) -> None:
    done = subprocess.run(
        petitionbot("telegram", "set-webhook"), cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env=petitionbot_env(
            database_url, TELEGRAM_BOT_TOKEN=fake_telegram.token,
            TELEGRAM_API_BASE_URL=fake_telegram.base_url,
            PUBLIC_BASE_URL="http://127.0.0.1:9/x", TELEGRAM_WEBHOOK_SECRET=SECRET))
    assert done.returncode == 0, done.stderr
    webhook = fake_telegram.webhook
    assert webhook is not None
    assert (webhook["url"], webhook["secret_token"]) == (
        "http://127.0.0.1:9/x/telegram/webhook", SECRET)
    assert set(webhook["allowed_updates"] or ()) >= {"message", "callback_query"}
    assert "http://127.0.0.1:9/x/telegram/webhook" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    assert fake_telegram.token not in done.stdout + done.stderr


@pytest.mark.parametrize("secret", ["", "has spaces", "x" * 257])
def test_set_webhook_refuses_to_run_without_a_usable_secret(
        secret: str, database_url: str, fake_telegram: FakeTelegram, tmp_path: Path) -> None:
    done = subprocess.run(
        petitionbot("telegram", "set-webhook"), cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env=petitionbot_env(
            database_url, TELEGRAM_BOT_TOKEN=fake_telegram.token,
            TELEGRAM_API_BASE_URL=fake_telegram.base_url,
            PUBLIC_BASE_URL="http://127.0.0.1:9/x", TELEGRAM_WEBHOOK_SECRET=secret))
    assert done.returncode != 0
    assert "TELEGRAM_WEBHOOK_SECRET" in done.stderr
    assert fake_telegram.webhook is None and not fake_telegram.calls_to("setWebhook")


def test_telegram_poll_without_a_token_says_so(database_url: str, tmp_path: Path) -> None:
    done = subprocess.run(petitionbot("telegram-poll"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=petitionbot_env(database_url))
    assert done.returncode != 0
    assert "TELEGRAM_BOT_TOKEN" in done.stderr


def test_telegram_poll_refuses_a_database_that_is_behind(fake_telegram: FakeTelegram,
                                                         tmp_path: Path) -> None:
    done = subprocess.run(
        petitionbot("telegram-poll"), cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env=petitionbot_env(f"sqlite:///{tmp_path / 'new.db'}",
                                        TELEGRAM_BOT_TOKEN=fake_telegram.token,
                                        TELEGRAM_API_BASE_URL=fake_telegram.base_url))
    assert done.returncode != 0
    assert "petitionbot db upgrade" in done.stderr
    assert not fake_telegram.calls_to("getUpdates")


# petitionbot chat --channel telegram ------------------------------------------------------

def test_the_simulator_shows_telegrams_buttons(database_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        petitionbot("chat", "--channel", "telegram", "--address", "3003"), cwd=tmp_path,
        input="hello\nSIGN\n", capture_output=True, text=True, timeout=60,
        env=petitionbot_env(database_url))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Hello from PLANETS Cancer Charity" in out
    assert "[ Sign the petition ] [ Read more ]" in out
    assert "[ Info ] [ Help ]" in out
    assert "[ Share my phone number ]" in out
    assert "[ Yes ] [ No ]" in out  # after typing SIGN, as a press would
    assert "1 SIGN" not in out  # not SMS's numbered choices
