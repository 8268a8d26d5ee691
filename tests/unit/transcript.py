"""Chats with the real shell, so tests read like transcripts: each message goes through
`bot.shell.service.Service.receive` (the conversation core, its effects, the database) on
a SQLite database of the test's own, and comes back as the channel shows it."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from bot.core.conversation import (
    Channel,
    Effect,
    Outcome,
    SignatureView,
    State,
    Step,
    SupporterView,
)
from bot.core.postcodes import nation_of
from bot.core.render import Message, Rendered, render
from bot.infra.config import Config, load_config
from bot.shell import people
from bot.shell.petitions import Catalogue
from bot.shell.service import Received, Service
from models import Base, Identity, Petition, Signature, Voice
from models.db import make_engine, make_sessions
from models.migrate import upgrade
from models.supporters import petition_id

CONFIG_PATH = Path(__file__).resolve().parents[2] / "config.toml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EXTERNAL = 49_257  # the shipped config's Change.org count
PHONE = "+447700900123"  # the supporter's, on SMS and WhatsApp (and shared on Telegram)
TELEGRAM_CHAT = "12345"

SILENT = None  # in a transcript table: no reply and no effect at all


def shipped_config() -> Config:
    return load_config(CONFIG_PATH)


def two_petition_config() -> Config:
    """The shipped config plus a second petition, SCANS, with no count elsewhere."""
    config = shipped_config()
    second = replace(config.petitions[0], slug="scans", code="SCANS", title="Fund faster scans",
                     external=())
    return replace(config, petitions=(*config.petitions, second))


@dataclass(frozen=True)
class Said:
    """One message from the supporter and everything that came of it."""

    sent: str
    before: State
    outcome: Outcome  # what the core decided, as the shell carried it out
    messages: tuple[Message, ...]
    rendered: tuple[Rendered, ...]

    @property
    def text(self) -> str:
        """Every reply as the channel shows it, one after the other."""
        return "\n\n".join(r.text for r in self.rendered)

    @property
    def words(self) -> str:
        """Every reply before channel rendering (no numbering, no escaping)."""
        return "\n\n".join(m.text for m in self.messages)

    @property
    def keys(self) -> tuple[str, ...]:
        """The texts said, in order (those a reply joins on separate lines included)."""
        return tuple(key for reply in self.outcome.replies for key in reply.phrase.text_keys())

    @property
    def effects(self) -> tuple[Effect, ...]:
        return self.outcome.effects


class Database:
    """One migrated SQLite file for the test process, emptied for each new chat."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="petitionbot-transcript-")
        self.engine: Engine = make_engine(f"sqlite:///{self.folder}/transcript.db")
        upgrade(self.engine)
        self.services: list[Service] = []
        self.messages = 0
        atexit.register(self.close)

    def fresh(self, config: Config) -> Service:
        """A new process's Service, on an empty database."""
        self._forget_services()
        with self.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        service = Service(config, make_sessions(self.engine), clock=lambda: NOW)
        # Transcripts test the conversation, not the reply budget (test_hostile_input does).
        service.abuse = replace(config.abuse, replies_per_window=10**9)
        service.sync_petitions()
        self.services.append(service)
        return service

    def close(self) -> None:
        self._forget_services()
        self.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _forget_services(self) -> None:
        for old in self.services:
            old.transactions.close()  # the connections it kept between messages
        self.services.clear()

    def message_id(self) -> str:
        self.messages += 1
        return f"m{self.messages}"


_database: Database | None = None


def database() -> Database:
    global _database
    if _database is None:
        _database = Database()
    return _database


class Chat:
    """One person on one channel, writing to the real shell on a fresh database.

    `here` sets the signatures already collected by the bot; `signed`, signatures the
    person made before (on any channel); `state`, where a stored conversation stands.
    """

    def __init__(self, channel: Channel = Channel.SMS, config: Config | None = None, *,
                 here: dict[str, int] | None = None, signed: Iterable[SignatureView] = (),
                 state: State | None = None, service: Service | None = None) -> None:
        self.channel = channel
        self.config = config or shipped_config()
        self.service = service or database().fresh(self.config)
        self.catalogue = Catalogue(self.service.content().petitions)
        self.address = TELEGRAM_CHAT if channel == Channel.TELEGRAM else PHONE
        self.phone = "" if channel == Channel.TELEGRAM else PHONE
        self.history: list[Said] = []
        with self.service.sessions.begin() as session:
            for slug, count in (here or {}).items():
                session.execute(update(Petition).where(Petition.slug == slug)
                                .values(signature_count=count))
        signed = tuple(signed)
        if signed or state is not None:
            self._enrol(signed, state)

    def on(self, channel: Channel) -> Chat:
        """The same person writing on another channel (the same phone number)."""
        return Chat(channel, self.config, service=self.service)

    def send(self, text: str, opt_out: str = "", contact: str = "") -> Said:
        """The supporter sends `text` (or shares a contact); the replies that come back."""
        if contact == "own" and self.channel == Channel.TELEGRAM:
            self.phone = PHONE  # their own number, as Telegram shares it
        before = self.state
        handled = self.service.receive(Received(
            self.channel, self.address, text, database().message_id(),
            phone=self.phone if contact != "other" else "", opt_out=opt_out, contact=contact))
        assert handled.decided is not None, "neither a replay nor over budget here"
        said = Said(text, before, handled.decided, handled.replies,
                    tuple(render(m, self.channel) for m in handled.replies))
        self.history.append(said)
        return said

    def sends(self, texts: Iterable[str]) -> list[Said]:
        return [self.send(text) for text in texts]

    @property
    def effects(self) -> list[Effect]:
        """Every effect of the conversation so far, in order."""
        return [effect for said in self.history for effect in said.effects]

    @property
    def state(self) -> State:
        """Where the stored conversation stands."""
        found = self._found()
        return people.from_found(found).state if found.sender else State()

    @property
    def supporter(self) -> SupporterView:
        """What the shell knows of the person, as the core is shown it."""
        found = self._found()
        if found.sender is None:
            return SupporterView(signatures=found.signatures)
        return people.from_found(found).facts

    @property
    def here(self) -> dict[str, int]:
        with self.service.sessions() as session:
            return self.service.counts(session, fresh=True)

    def publish_voice(self, text: str, nation: str, slug: str = "sirt") -> None:
        """A supporter's voice, approved by staff for publication."""
        with self.service.sessions.begin() as session:
            session.add(Voice(petition_id=self._petition_id(session, slug), supporter_id=None,
                              text=text, nation=nation, status="approved",
                              publish_consent=True, flagged=False, created_at=NOW,
                              moderated_by="staff", moderated_at=NOW))

    def _found(self) -> people.Found:
        with self.service.transactions.begin() as work:
            return people.find(work, self.channel, self.address, self.phone)

    def _enrol(self, signed: tuple[SignatureView, ...], state: State | None) -> None:
        with self.service.transactions.begin() as work:
            sender = people.load(work, self.channel, self.address, self.phone, "", False, NOW)
            assert isinstance(sender, people.Sender)
            if state is not None:
                people.save(work, sender, state, NOW)
        with self.service.sessions.begin() as session:
            supporter_id = session.get_one(Identity, sender.identity_id).supporter_id
            for s in signed:
                session.add(Signature(
                    petition_id=self._petition_id(session, s.petition),
                    supporter_id=supporter_id, number=s.number, name=s.name,
                    postcode=s.postcode or None, country=s.country or None,
                    nation=nation_of(s.postcode).value if s.postcode else "outside_uk",
                    channel=s.channel.value,
                    signed_at=s.signed_at))

    @staticmethod
    def _petition_id(session: Session, slug: str) -> int:
        pid = petition_id(session, slug)
        assert pid is not None, slug
        return pid


Row = tuple[str, str | None, Step]


def play(chat: Chat, table: Iterable[Row]) -> list[Said]:
    """Send each message of a transcript table; check the reply and the step after it.

    A row is (what the supporter sends, a fragment the replies must contain, the step
    afterwards); SILENT as the fragment means no reply and no effect at all.
    """
    said_all = []
    for sent, fragment, step in table:
        said = chat.send(sent)
        if fragment is SILENT:
            assert said.outcome.replies == () and said.effects == (), (
                f"{sent!r} should get silence, got {said.text!r} {said.effects}")
            assert said.outcome.state == said.before, f"{sent!r} changed the state while silent"
        else:
            assert said.outcome.replies, f"{sent!r} got no reply"
            assert fragment in said.text, (
                f"after {sent!r} expected {fragment!r} in:\n{said.text}")
        assert chat.state.step == step, (
            f"after {sent!r} expected step {step}, got {chat.state.step}\n{said.text}")
        said_all.append(said)
    return said_all


def signed_up(chat: Chat, name: str = "Amira Hussain", postcode: str = "SW1A 1AA",
              updates: str = "NO") -> Chat:
    """Walk a supporter through signing (used where signing is the setup, not the test)."""
    play(chat, [
        ("Hi", "SIRT", Step.MENU),
        ("SIGN", "16 or over", Step.CONSENT),
        ("YES", "full name", Step.NAME),
        (name, "postcode", Step.POSTCODE),
        (postcode, "Please check", Step.REVIEW),
        ("YES", "you have signed", Step.UPDATES),
        (updates, "", Step.SIGNED),
    ])
    return chat


# Messages that bring a new supporter to each step.
TO_STEP: dict[Step, list[str]] = {
    Step.NEW: [],
    Step.MENU: ["Hi"],
    Step.CONSENT: ["Hi", "SIGN"],
    Step.NAME: ["Hi", "SIGN", "YES"],
    Step.POSTCODE: ["Hi", "SIGN", "YES", "Amira Hussain"],
    Step.COUNTRY: ["Hi", "SIGN", "YES", "Amira Hussain", "NONE"],
    Step.REVIEW: ["Hi", "SIGN", "YES", "Amira Hussain", "SW1A 1AA"],
    Step.UPDATES: ["Hi", "SIGN", "YES", "Amira Hussain", "SW1A 1AA", "YES"],
    Step.SIGNED: ["Hi", "SIGN", "YES", "Amira Hussain", "SW1A 1AA", "YES", "NO"],
    Step.DELETING: ["Hi", "DELETE"],
    Step.PERSON: ["Hi", "PERSON"],
    Step.VOICE: ["Hi", "SIGN", "YES", "Amira Hussain", "SW1A 1AA", "YES", "NO", "VOICE"],
    Step.VOICE_CONSENT: ["Hi", "SIGN", "YES", "Amira Hussain", "SW1A 1AA", "YES", "NO", "VOICE",
                         "My dad waited too long for treatment"],
}
