"""The bot's words reworded by staff (bot/shell/bot_texts.py and rewording.py): the same
checks as config.toml's at start, save and reset, the audit, consent versions, and a
change reaching another process's bot on its next message, with no restart."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from select import select as wait_for_output
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel
from bot.core.texts import DEFAULTS
from bot.infra.clock import utcnow
from bot.infra.config import MAX_TEXT, Config, ConfigError, load_config
from bot.shell import bot_texts, content, rewording
from bot.shell.service import Received, Service
from models import AuditEntry, BotText, ConsentRecord, ConsentVersion, ContentState, Supporter
from tests.conftest import CONFIG, together

ADMIN = "admin@planets.example"
AMIRA, BEN = "+447700900123", "+447700900456"
FILE_VERSION = "2026-11-27"  # config.toml's [privacy] version
ids = itertools.count(1)


def says(service: Service, phone: str, text: str) -> list[str]:
    """What the bot answers `text` from `phone` by SMS."""
    handled = service.receive(Received(Channel.SMS, phone, text, f"SM{next(ids):032d}",
                                       phone=phone))
    return [message.text for message in handled.replies]


def signs(service: Service, phone: str, name: str) -> list[str]:
    """Everything the bot says to someone signing by SMS, in order."""
    said: list[str] = []
    for text in ("Hi", "SIGN", "YES", name, "EH1 1AA", "YES", "NO"):
        said += says(service, phone, text)
    return said


def save(sessions: sessionmaker[Session], config: Config, key: str,
         text: str) -> rewording.Change | None:
    with sessions.begin() as session:
        return rewording.save(session, config, key, text, ADMIN, utcnow())


def reset(sessions: sessionmaker[Session], config: Config,
          key: str) -> rewording.Change | None:
    with sessions.begin() as session:
        return rewording.reset(session, config, key, ADMIN, utcnow())


def revision(sessions: sessionmaker[Session]) -> tuple[int, str | None]:
    with sessions() as session:
        state = session.get(ContentState, 1)  # PostgreSQL's tests empty even this table
        return (state.revision, state.privacy_version) if state else (0, None)


def audited(sessions: sessionmaker[Session]) -> list[tuple[str, str, str | None, Any]]:
    with sessions() as session:
        return [(e.actor, e.action, e.target, e.detail) for e in session.scalars(
            select(AuditEntry).order_by(AuditEntry.id))]


def sign_version(sessions: sessionmaker[Session], phone: str) -> str:
    """The consent version recorded when the supporter with `phone` agreed to sign."""
    with sessions() as session:
        version = session.scalar(select(ConsentRecord.text_version).join(
            Supporter, Supporter.id == ConsentRecord.supporter_id).where(
            Supporter.phone == phone, ConsentRecord.purpose == "sign"))
    assert version is not None
    return version


# Save, reset, audit ---------------------------------------------------------------------

def test_a_reworded_greeting_is_said_from_the_next_message_and_audited(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    assert says(service, AMIRA, "Hi")[0].startswith("Hello from PLANETS Cancer Charity.")
    before = revision(sessions)[0]

    change = save(sessions, config, "greeting", "Hi from {organiser}!\r\n{count} have signed. ")

    assert change == rewording.Change("greeting", DEFAULTS["greeting"],
                                      "Hi from {organiser}!\n{count} have signed.")
    assert revision(sessions) == (before + 1, None)  # not a consent text: same version
    assert says(service, BEN, "Hi")[0].startswith("Hi from PLANETS Cancer Charity!\n")
    assert audited(sessions) == [(ADMIN, "text.save", "text:greeting", {
        "previous": DEFAULTS["greeting"], "new": "Hi from {organiser}!\n{count} have signed."})]
    with sessions() as session:
        shown = bot_texts.wordings(session, config)["greeting"]
    assert (shown.source, shown.actor, shown.default) == ("console", ADMIN,
                                                         DEFAULTS["greeting"])


def test_saving_the_same_wording_again_changes_nothing(
        sessions: sessionmaker[Session], config: Config) -> None:
    save(sessions, config, "ask_name", "Your full name, please?")
    assert save(sessions, config, "ask_name", "Your full name, please?") is None
    assert [a[1] for a in audited(sessions)] == ["text.save"]


def test_reset_goes_back_to_the_file_or_the_built_in_wording(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    assert config.safeguarding.reply  # the shipped config.toml words the signpost itself
    save(sessions, config, "signpost", "If you need help now, call 999. Our team will read this.")
    save(sessions, config, "help", "Reply SIGN to sign. Questions: {contact}")
    assert says(service, AMIRA, "HELP") == ["Reply SIGN to sign. Questions: "
                                            "info@planetscharity.org"]

    assert reset(sessions, config, "signpost") is not None
    assert reset(sessions, config, "help") is not None
    assert reset(sessions, config, "help") is None  # already the default

    with sessions() as session:
        now = bot_texts.wordings(session, config)
        assert session.scalar(select(func.count()).select_from(BotText)) == 0
    assert (now["signpost"].text, now["signpost"].source) == (config.safeguarding.reply, "file")
    assert (now["help"].text, now["help"].source) == (DEFAULTS["help"], "default")
    assert says(service, AMIRA, "HELP")[0].startswith("PLANETS petition bot.")
    assert [a[1] for a in audited(sessions)] == ["text.save", "text.save", "text.reset",
                                                  "text.reset"]
    assert audited(sessions)[3][3] == {"previous": "Reply SIGN to sign. Questions: {contact}",
                                       "new": DEFAULTS["help"]}


def test_saving_the_default_wording_is_a_reset(
        sessions: sessionmaker[Session], config: Config) -> None:
    save(sessions, config, "ask_country", "Where do you live?")
    save(sessions, config, "ask_country", DEFAULTS["ask_country"])
    with sessions() as session:
        assert session.get(BotText, "ask_country") is None
        assert bot_texts.wordings(session, config)["ask_country"].source == "default"


# The checks start-up makes ----------------------------------------------------------------

REFUSED = [
    ("ask_name", "What\u2019s your name?", "use plain characters only"),
    ("ask_name", "Your name \U0001F60A", "\U0001F60A"),
    ("help", "Text {phone_number} for help", "{phone_number} is not a field this text can use"),
    ("ask_name", "Your name, {name}?", "(it may use no fields)"),
    ("greeting", "Hello {organiser", "a brace { or } has no partner"),
    ("greeting", "Hello {}", "{} is not a field"),
    ("greeting", "{count:>99999} signed", "write each field plainly"),
    ("greeting", "{title.__class__}", "is not a field this text can use"),
    ("signed", "Thanks! " + "x" * MAX_TEXT, f"at most {MAX_TEXT} characters"),
    ("help", "   ", "must not be empty"),
    ("consent", "We keep your name. Privacy notice: {privacy_url}", "minimum age"),
    ("consent", "You must be {minimum_age} or over to sign.", "link the privacy notice"),
    ("ask_updates", "Updates from {short_name}?", "{short_name} is not a field"),
]


@pytest.mark.parametrize(("key", "text", "fragment"), REFUSED,
                         ids=[f"{k}-{f[:20]}" for k, _, f in REFUSED])
def test_a_wording_start_up_would_refuse_is_refused_and_nothing_changes(
        sessions: sessionmaker[Session], config: Config, key: str, text: str,
        fragment: str) -> None:
    before = revision(sessions)
    with pytest.raises(rewording.TextError) as refused:
        save(sessions, config, key, text)
    assert any(fragment in problem for problem in refused.value.problems), refused.value
    assert revision(sessions) == before
    assert audited(sessions) == []
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(BotText)) == 0


def test_config_toml_and_the_console_refuse_a_wording_in_the_same_words(
        sessions: sessionmaker[Session], config: Config, tmp_path: Path) -> None:
    wording = "Questions? Text {phone_number} \u2013 any time"
    text = CONFIG.read_text().replace('issue_file = "petitions/sirt.md"',
                                      f'issue_file = "{CONFIG.parent / "petitions/sirt.md"}"')
    (tmp_path / "config.toml").write_text(text + f'\n[texts]\nhelp = "{wording}"\n')
    with pytest.raises(ConfigError) as at_start:
        load_config(tmp_path / "config.toml")
    with pytest.raises(rewording.TextError) as in_console:
        save(sessions, config, "help", wording)
    assert [e for e in at_start.value.errors if e.startswith("texts.help: ")] == [
        f"texts.help: {problem}" for problem in in_console.value.problems]
    assert len(in_console.value.problems) == 2


# Consent versions -------------------------------------------------------------------------

NEW_CONSENT = ("We store your name, postcode and this contact to count your signature for "
               "{decision_makers}; we keep them {retention}. You must be {minimum_age} or "
               "over. Privacy notice: {privacy_url}")


def test_each_change_to_the_consent_wording_makes_a_version_and_both_reset_return_to_the_file(
        sessions: sessionmaker[Session], config: Config) -> None:
    consent = save(sessions, config, "consent", NEW_CONSENT)
    assert consent is not None and consent.consent_version == f"{FILE_VERSION}+1"
    updates = save(sessions, config, "ask_updates", "Shall we send you updates here?")
    assert updates is not None and updates.consent_version == f"{FILE_VERSION}+2"
    assert revision(sessions)[1] == f"{FILE_VERSION}+2"

    with sessions() as session:
        made = {v.version: (v.consent, v.updates, v.actor) for v in session.scalars(
            select(ConsentVersion))}
        assert bot_texts.live_texts(session, config)[1] == f"{FILE_VERSION}+2"
    assert made == {
        FILE_VERSION: (config.privacy.consent, config.privacy.updates, "config.toml"),
        f"{FILE_VERSION}+1": (NEW_CONSENT, config.privacy.updates, ADMIN),
        f"{FILE_VERSION}+2": (NEW_CONSENT, "Shall we send you updates here?", ADMIN)}
    assert audited(sessions)[1][3]["consent_version"] == f"{FILE_VERSION}+2"

    first = reset(sessions, config, "consent")
    assert first is not None and first.consent_version == f"{FILE_VERSION}+3"  # updates differ
    second = reset(sessions, config, "ask_updates")
    assert second is not None and second.consent_version == FILE_VERSION
    assert revision(sessions)[1] is None  # the file's version again
    with sessions() as session:
        history = bot_texts.consent_history(session, config)
        assert bot_texts.live_texts(session, config)[1] == FILE_VERSION
    assert (history[0].version, history[0].current) == (f"{FILE_VERSION}+3", False)
    assert [v.version for v in history if v.current] == [FILE_VERSION]
    assert len(history) == 4


def test_the_history_shows_the_files_version_before_any_change(
        sessions: sessionmaker[Session], config: Config) -> None:
    with sessions() as session:
        history = bot_texts.consent_history(session, config)
    assert [(v.version, v.actor, v.created_at, v.current) for v in history] == [
        (FILE_VERSION, "config.toml", None, True)]


def test_amira_keeps_the_version_she_agreed_to_and_ben_signs_under_the_new_one(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    amira = signs(service, AMIRA, "Amira Khan")
    assert any("Only our campaign staff see it" in said for said in amira)

    save(sessions, config, "consent", NEW_CONSENT)
    ben = signs(service, BEN, "Ben Jones")

    assert any(said.startswith("We store your name") for said in ben)
    assert sign_version(sessions, AMIRA) == FILE_VERSION
    assert sign_version(sessions, BEN) == f"{FILE_VERSION}+1"


def test_two_admins_changing_the_consent_at_once_make_two_versions(
        sessions: sessionmaker[Session], config: Config) -> None:
    with sessions.begin() as session:
        content.changed(session)  # the row the migration makes (PostgreSQL's tests empty it)
    def saving(wording: str) -> Callable[[], str | None]:
        def run() -> str | None:
            change = save(sessions, config, "consent", wording)
            return change.consent_version if change else None
        return run

    made = together([saving(NEW_CONSENT), saving(NEW_CONSENT.replace("We store", "We keep"))])
    assert sorted(v or "" for v in made) == [f"{FILE_VERSION}+1", f"{FILE_VERSION}+2"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConsentVersion)) == 3


# For the operator at start ------------------------------------------------------------------

def test_overridden_names_every_text_the_console_reworded(
        sessions: sessionmaker[Session], config: Config) -> None:
    with sessions() as session:
        assert bot_texts.overridden(session, config) == []
    save(sessions, config, "greeting", "Hello from {organiser}. {count} have signed.")
    save(sessions, config, "signpost", "If you need help now, call 999.")
    save(sessions, config, "consent", NEW_CONSENT)
    with sessions() as session:
        lines = bot_texts.overridden(session, config)
    assert [line.split(":")[0] for line in lines] == [
        "privacy.consent", "texts.greeting", "safeguarding.reply", "privacy.version"]
    assert lines[0].endswith("config.toml's wording is not used")
    assert not lines[1].endswith("not used")  # config.toml does not word the greeting
    assert f"{FILE_VERSION}+1" in lines[3] and f"not config.toml's {FILE_VERSION}" in lines[3]
    assert not any(ADMIN in line for line in lines)  # no one's address in the logs


# Another process --------------------------------------------------------------------------

class Chat:
    """`petitionbot chat` in a process of its own: one Service, kept running."""

    def __init__(self, database_url: str, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOG_"))}
        env.update(DATABASE_URL=database_url, PETITIONBOT_CONFIG=str(CONFIG))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "chat", "--channel", "sms", "--address", AMIRA],
            cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        self.output = b""
        self.prompts = 0
        self.answer()  # up to its first prompt

    def say(self, text: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()
        return self.answer()

    def answer(self) -> str:
        """What it printed up to its next prompt (bounded: a stuck process fails the test)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        start = len(self.output)
        deadline = time.monotonic() + 120
        while self.output.count(b"you> ") <= self.prompts:
            ready, _, _ = wait_for_output([fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                raise AssertionError(f"the chat stopped answering: {self.output!r}")
            self.output += chunk
        self.prompts += 1
        return self.output[start:].decode()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture
def chat(database_url: str, tmp_path: Path) -> Iterator[Chat]:
    running = Chat(database_url, tmp_path)
    try:
        yield running
    finally:
        running.close()


def test_a_change_reaches_the_bot_in_another_process_on_its_next_message(
        chat: Chat, sessions: sessionmaker[Session], config: Config) -> None:
    assert "PLANETS petition bot. Reply SIGN to sign" in chat.say("HELP")

    save(sessions, config, "help", "Reply SIGN to sign the petition. Questions: {contact}")

    assert "Reply SIGN to sign the petition. Questions: info@planetscharity.org" in chat.say(
        "HELP")
