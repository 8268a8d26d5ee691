"""A fake shell for pure conversation tests: it keeps the supporter's facts, applies the
core's effects to them the way `bot.shell.service.Service` does, and renders replies as each
channel shows them, so tests can read like transcripts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from bot.core.conversation import (
    Channel,
    Context,
    Effect,
    Erase,
    GrantConsent,
    Inbound,
    OptIn,
    OptOut,
    Outcome,
    SaveVoice,
    Sign,
    SignatureView,
    State,
    Step,
    Subscribe,
    SupporterView,
    handle,
)
from bot.core.render import Message, Rendered, render
from bot.core.texts import Phrase
from bot.infra.config import Config, load_config
from bot.shell.petitions import Catalogue
from bot.shell.service import Service

CONFIG_PATH = Path(__file__).resolve().parents[2] / "config.toml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EXTERNAL = 49_257  # the shipped config's Change.org count

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
    outcome: Outcome
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
        return tuple(reply.phrase.key for reply in self.outcome.replies)

    @property
    def effects(self) -> tuple[Effect, ...]:
        return self.outcome.effects


@dataclass
class FakeShell:
    """One identity on one channel, with the facts the real shell would load for it."""

    channel: Channel = Channel.SMS
    config: Config = field(default_factory=shipped_config)
    state: State = field(default_factory=State)
    supporter: SupporterView = field(default_factory=SupporterView)
    here: dict[str, int] = field(default_factory=dict)  # signatures collected by the bot
    last_number: dict[str, int] = field(default_factory=dict)
    phone: str = ""  # the supporter's proven phone number ("" on Telegram until shared)
    history: list[Said] = field(default_factory=list)
    voices: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # approved

    def __post_init__(self) -> None:
        # The real shell's texts and common parameters; its sessions are never used here.
        self.service = Service(self.config, sessionmaker())
        self.catalogue = Catalogue(self.config.petitions)

    def context(self) -> Context:
        # The shell offers Telegram users to link their phone until one is known.
        offer = self.channel == Channel.TELEGRAM and not self.phone
        return Context(self.catalogue.views(self.here, self.voices,
                                            long_pages=self.channel != Channel.SMS),
                       self.config.default_petition, self.supporter,
                       self.config.privacy.version, offer_phone_link=offer,
                       distress_words=self.config.safeguarding.words)

    def send(self, text: str, opt_out: str = "", contact: str = "") -> Said:
        """The supporter sends `text` (or shares a contact); apply the effects; return the
        replies."""
        channel = self.channel
        before = self.state
        if contact == "own" and channel == Channel.TELEGRAM:
            self.phone = "+447700900123"  # the shell links the chat before the core runs
        inbound = Inbound(channel, text, f"m{len(self.history)}", opt_out, contact)
        outcome = handle(before, inbound, self.context(), NOW)
        results = self._apply(outcome.effects, channel)
        messages = tuple(self._words(reply.phrase, results, reply.options)
                         for reply in outcome.replies)
        said = Said(text, before, outcome, messages,
                    tuple(render(m, channel) for m in messages))
        self.state = State() if results.get("erased") else outcome.state
        self.history.append(said)
        return said

    def sends(self, texts: Iterable[str]) -> list[Said]:
        return [self.send(text) for text in texts]

    @property
    def effects(self) -> list[Effect]:
        """Every effect of the conversation so far, in order."""
        return [effect for said in self.history for effect in said.effects]

    def total(self, slug: str = "sirt") -> int:
        external = sum(e.count for e in self.config.petition(slug).external)
        return self.here.get(slug, 0) + external

    # What the real shell does with each effect (bot/shell/service.py, Service._apply).
    def _apply(self, effects: Iterable[Effect], channel: Channel) -> dict[str, object]:
        results: dict[str, object] = {}
        for effect in effects:
            match effect:
                case GrantConsent() | SaveVoice():
                    pass  # a consent record, a voice for moderation: nothing the core reads
                case Sign():
                    results.update(self._sign(effect, channel))
                case Subscribe(slug):
                    self.supporter = replace(self.supporter,
                                             subscribed=self.supporter.subscribed | {slug})
                case OptOut():
                    # Opting out withdraws updates consent and drops this identity's subscriptions.
                    self.supporter = replace(self.supporter, opted_out=True,
                                             subscribed=frozenset())
                case OptIn():
                    self.supporter = replace(self.supporter, opted_out=False)
                case Erase():
                    for signature in self.supporter.signatures:
                        self.here[signature.petition] -= 1
                    self.supporter = SupporterView()
                    results["erased"] = True
        return results

    def _sign(self, sign: Sign, channel: Channel) -> dict[str, object]:
        existing = self.supporter.signature(sign.petition)
        if existing is not None:  # the shell never signs twice
            return {"number": existing.number, "count": f"{self.total(sign.petition):,}"}
        number = self.last_number.get(sign.petition, 0) + 1
        self.last_number[sign.petition] = number
        self.here[sign.petition] = self.here.get(sign.petition, 0) + 1
        signature = SignatureView(sign.petition, number, NOW, channel, sign.name, sign.postcode,
                                  sign.country)
        self.supporter = replace(self.supporter,
                                 signatures=(*self.supporter.signatures, signature))
        return {"number": number, "count": f"{self.total(sign.petition):,}"}

    def _words(self, phrase: Phrase, results: Mapping[str, object],
               options: tuple[str, ...]) -> Message:
        if phrase.key == "signed":  # the shell adds the number and count it has just taken
            phrase = Phrase(phrase.key, {**phrase.params, "number": results.get("number"),
                                         "count": results.get("count")})
        return Message(self.service.texts.render(phrase, self.service.common), options)


Row = tuple[str, str | None, Step]


def play(shell: FakeShell, table: Iterable[Row]) -> list[Said]:
    """Send each message of a transcript table; check the reply and the step after it.

    A row is (what the supporter sends, a fragment the replies must contain, the step
    afterwards); SILENT as the fragment means no reply and no effect at all.
    """
    said_all = []
    for sent, fragment, step in table:
        said = shell.send(sent)
        if fragment is SILENT:
            assert said.outcome.replies == () and said.effects == (), (
                f"{sent!r} should get silence, got {said.text!r} {said.effects}")
            assert said.outcome.state == said.before, f"{sent!r} changed the state while silent"
        else:
            assert said.outcome.replies, f"{sent!r} got no reply"
            assert fragment in said.text, (
                f"after {sent!r} expected {fragment!r} in:\n{said.text}")
        assert shell.state.step == step, (
            f"after {sent!r} expected step {step}, got {shell.state.step}\n{said.text}")
        said_all.append(said)
    return said_all


def signed_up(shell: FakeShell, name: str = "Amira Hussain", postcode: str = "SW1A 1AA",
              updates: str = "NO") -> FakeShell:
    """Walk a supporter through signing (used where signing is the setup, not the test)."""
    play(shell, [
        ("Hi", "SIRT", Step.MENU),
        ("SIGN", "16 or over", Step.CONSENT),
        ("YES", "full name", Step.NAME),
        (name, "postcode", Step.POSTCODE),
        (postcode, "Please check", Step.REVIEW),
        ("YES", "you have signed", Step.UPDATES),
        (updates, "", Step.SIGNED),
    ])
    return shell


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
    Step.VOICE: ["Hi", "SIGN", "YES", "Amira Hussain", "SW1A 1AA", "YES", "NO", "VOICE"],
    Step.VOICE_CONSENT: ["Hi", "SIGN", "YES", "Amira Hussain", "SW1A 1AA", "YES", "NO", "VOICE",
                         "My dad waited too long for treatment"],
}
