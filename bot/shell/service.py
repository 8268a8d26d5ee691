"""The shell around the conversation. For each inbound message, in one transaction (its
unit of work): find who it is from, ask the core what to do, spend the person's reply
budget, carry out the core's effects and save where the conversation is. Nothing is sent
from here: the replies are returned to the adapter that asked."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.core import budget
from bot.core import conversation as core
from bot.core.budget import Verdict
from bot.core.conversation import Channel, Inbound, Outcome
from bot.core.inputs import storable
from bot.core.render import Message
from bot.core.texts import Phrase
from bot.infra import metrics
from bot.infra.clock import utcnow
from bot.infra.config import Config
from bot.shell import inbox, people, staff_links
from bot.shell.broadcast import skip_pending_for
from bot.shell.content import Content, LiveContent
from bot.shell.counts import Counts
from bot.shell.effects import Counted, Effects
from bot.shell.petitions import Catalogue
from bot.shell.unit_of_work import Transactions, UnitOfWork
from models import ChannelCount, Identity, Petition, Voice
from models.sql import insert_ignore
from models.supporters import petition_id

log = logging.getLogger("petitionbot.inbound")

RACE_ATTEMPTS = 2
LAST_INBOUND_PRECISION = timedelta(minutes=1)
SHOWN_VOICES = 3
NATION_NAMES = {"england": "England", "scotland": "Scotland", "wales": "Wales",
                "northern_ireland": "Northern Ireland", "crown_dependencies": "Channel Islands "
                "or Isle of Man", "bfpo": "British Forces", "outside_uk": "outside the UK"}


@dataclass(frozen=True)
class Received:
    """An inbound message as an adapter parsed it."""

    channel: Channel
    address: str           # E.164 phone number, or a Telegram chat id
    text: str
    provider_id: str       # MessageSid / update_id: at most one effect per id
    phone: str = ""        # E.164, when known: links the person's identities
    opt_out: str = ""      # the provider's own keyword match (Twilio OptOutType)
    contact: str = ""      # "own": `phone` is the sender's own shared contact; "other": refused

    def __post_init__(self) -> None:
        # Whatever the adapter was handed, the text is storable and renderable from here on:
        # a NUL or a lone surrogate must not make the database refuse the message (and its
        # provider retry it forever), nor a non-character make the reply invalid XML.
        for name in ("text", "provider_id", "address"):
            value = getattr(self, name)
            if (cleaned := storable(value)) != value:
                object.__setattr__(self, name, cleaned)


@dataclass(frozen=True)
class Handled:
    replies: tuple[Message, ...]
    duplicate: bool = False
    identity_id: int | None = None
    step: str = ""
    counted: Counted | None = None  # this message added a signature
    decided: Outcome | None = None  # what the core decided, as carried out (None: a replay,
                                    # or a message left unanswered over budget)

    @property
    def signed(self) -> bool:
        """This message added a signature."""
        return self.counted is not None

    @property
    def outcome(self) -> str:
        """What the message came to, for logs and metrics."""
        if self.duplicate:
            return "duplicate"
        if self.step == "erased":
            return "erased"
        if self.signed:
            return "signed"
        return "replied" if self.replies else "silent"


class Service:
    def __init__(self, config: Config, sessions: sessionmaker[Session],
                 clock: Callable[[], datetime] = utcnow, secret: str = "") -> None:
        self.config = config
        self.sessions = sessions
        self.secret = secret.encode()  # keys the hashes that stand in for addresses
        self.abuse = config.abuse  # the reply budget (tests may set a smaller one)
        self.clock = clock
        self.live = LiveContent(config)  # petitions and words staff may change
        self.telegram_username = ""  # set once the bot knows its name: personal share links
        org = config.organisation
        self.common: dict[str, object] = {
            "organisation": org.name, "short_name": org.short_name, "contact": org.contact,
            "privacy_url": org.privacy_url, "retention": config.privacy.retention,
            "minimum_age": config.privacy.minimum_age, "max_length": core.MAX_NAME,
        }
        self._counts = Counts()
        self.effects = Effects(config, self._counts)
        self.transactions = Transactions(self.engine)

    def content(self, conn: Connection | Session | None = None) -> Content:
        """The live content (petitions, the bot's words, the consent version)."""
        if conn is not None:
            return self.live.current(conn)
        with self.engine.connect() as own:
            return self.live.current(own)

    @property
    def engine(self) -> Engine:
        engine: Engine = self.sessions.kw["bind"]
        return engine

    def sync_petitions(self) -> None:
        """Give every petition its row and channel counters: config.toml's, and those staff
        created (which have theirs already, except in the simulator's sandbox, whose
        content is the live database's)."""
        with self.sessions.begin() as session:
            now = self.clock()
            slugs = dict.fromkeys([*(p.slug for p in self.config.petitions),
                                   *(p.slug for p in self.content(session).petitions)])
            for slug in slugs:
                insert_ignore(session, Petition, {"slug": slug, "signature_count": 0,
                                                  "last_number": 0, "created_at": now},
                              ["slug"])
                pid = petition_id(session, slug)
                for channel in Channel:
                    insert_ignore(session, ChannelCount, {"petition_id": pid,
                                                          "channel": channel.value, "count": 0},
                                  ["petition_id", "channel"])

    def mark_unreachable(self, channel: Channel, address: str) -> None:
        """The provider says this address cannot be reached (e.g. the bot was blocked)."""
        with self.sessions.begin() as session:
            now = self.clock()
            identity_id = session.scalar(select(Identity.id).where(
                Identity.channel == channel.value, Identity.address == address))
            if identity_id is not None:
                session.execute(update(Identity).where(Identity.id == identity_id)
                                .values(unreachable_at=now))
                skip_pending_for(session, identity_id, "unreachable", now)

    def move_address(self, channel: Channel, old: str, new: str) -> None:
        """The provider moved a chat to a new address (Telegram's ChatMigrated)."""
        with self.sessions.begin() as session:
            taken = session.scalar(select(Identity.id).where(Identity.channel == channel.value,
                                                             Identity.address == new))
            if taken is None:
                session.execute(update(Identity).where(Identity.channel == channel.value,
                                                       Identity.address == old)
                                .values(address=new))

    def receive(self, msg: Received) -> Handled:
        """Handle one inbound message in one transaction; return the replies to send."""
        started = time.perf_counter()
        channel = msg.channel.value
        try:
            handled = self._handle(msg)
        except Exception:
            metrics.observe_inbound(channel, "error", time.perf_counter() - started)
            raise
        if handled.counted is not None:  # committed: show the new count from now on
            self._counts.added(handled.counted.petition, handled.counted.here)
        seconds = time.perf_counter() - started
        # Ids, steps and outcomes only: never the address, a name or the text.
        log.info("inbound channel=%s identity=%s step=%s outcome=%s replies=%d ms=%.1f",
                 channel, handled.identity_id, handled.step, handled.outcome,
                 len(handled.replies), seconds * 1000, extra={
                     "event": "inbound", "channel": channel, "identity": handled.identity_id,
                     "step": handled.step, "outcome": handled.outcome,
                     "replies": len(handled.replies), "ms": round(seconds * 1000, 1)})
        metrics.observe_inbound(channel, handled.outcome, seconds, signed=handled.signed)
        return handled

    def _handle(self, msg: Received) -> Handled:
        """The message in its unit of work; handled again from the start, once, if it lost
        a race with another transaction (which has committed by now): against what that
        one wrote."""
        attempt = 1
        while True:
            try:
                with self.transactions.begin() as work:
                    return self._receive(work, msg)
            except (IntegrityError, people.ConcurrentUpdate):
                if attempt == RACE_ATTEMPTS:
                    raise
                attempt += 1

    def _receive(self, work: UnitOfWork, msg: Received) -> Handled:
        now = self.clock()
        sender = people.load(work, msg.channel, msg.address, msg.phone, msg.provider_id,
                             msg.contact == "own" and msg.channel == Channel.TELEGRAM, now)
        if isinstance(sender, people.Replay):
            # The provider retries when an answer was lost on the way: the same answer.
            return Handled(sender.replies, duplicate=True)
        # A staff member's one-time code (from the console's Test sends page) links this
        # chat to their account, and goes no further; any other text (the regex decides,
        # no lookup) goes on to the conversation.
        linked = staff_links.link(work, sender, msg.channel, msg.address, msg.text, now)
        handled = (self._answer(work, sender, msg, now) if linked is None else
                   Handled(linked, identity_id=sender.identity_id, step="staff_link"))
        erased = handled.step == "erased"
        people.record(work, msg.channel, msg.provider_id,
                      None if erased else sender.identity_id,
                      None if erased else msg.text[:1600], handled.replies, now)
        return handled

    def _answer(self, work: UnitOfWork, sender: people.Sender, msg: Received,
                now: datetime) -> Handled:
        """Ask the core, spend the person's reply budget, carry out what it decided."""
        inbound = Inbound(msg.channel, msg.text, msg.provider_id, msg.opt_out, msg.contact)
        state = sender.state
        content = self.live.current(work.conn)  # staff's latest words, on every process
        context = self._context(work, sender, msg.channel, content)
        outcome = core.handle(state, inbound, context, now)  # pure: nothing happens yet
        if core.shows_voices(outcome):
            # Read for each message that shows them (never kept in a process, so an erased
            # voice is gone everywhere at once), then the core is asked again.
            context = replace(context, petitions=self._petitions(work, content, voices=True))
            outcome = core.handle(state, inbound, context, now)
        verdict = self._spend(work, sender, outcome, msg, now)
        if verdict != Verdict.REPLY and not core.binding_over_budget(state, outcome):
            sender.last_inbound_at = now  # nothing happens that they are not told about
            people.save(work, sender, None, now)
            return Handled(self._notice(content) if verdict == Verdict.NOTICE else (),
                           identity_id=sender.identity_id, step=state.step.value)
        # Over budget, STOP, START and DELETE (with its confirmation) still take effect.
        # Their own answer takes the notice's one slot (a STOP is acknowledged, DELETE's
        # question asked); past it they go unanswered.
        if verdict == Verdict.SILENT:
            outcome = core.unanswered(outcome)
        applied = self.effects.apply(work, outcome.effects, sender, msg.channel,
                                     msg.provider_id, msg.phone, now, content)
        if applied.signed is not None:  # the thanks give the number the signature took
            outcome = core.handle(state, inbound, replace(context, signed=applied.signed), now)
        said = tuple(Message(content.texts.render(reply.phrase, self.common), reply.options)
                     for reply in outcome.replies)
        if applied.erased:
            self._counts.forget()  # the next reader sees the change
            # Erasing oneself must not refill the budget: it outlives them, keyed by hashes.
            people.leave_budget(work.conn, self._budget_keys(msg, sender),
                                sender.reply_times or [], sender.over_budget_at, now)
            return Handled(said, step="erased", decided=outcome)
        # Minute precision is plenty for WhatsApp's 24-hour window, and saves a write.
        last = sender.last_inbound_at
        if last is None or now - last > LAST_INBOUND_PRECISION or last > now:
            sender.last_inbound_at = now
        sender.unreachable_at = None  # they wrote to us: reachable again
        people.save(work, sender, outcome.state, now)
        return Handled(said, identity_id=sender.identity_id, step=outcome.state.step.value,
                       counted=applied.counted, decided=outcome)

    def _context(self, work: UnitOfWork, sender: people.Sender,
                 channel: Channel, content: Content) -> core.Context:
        told, answer, kept = inbox.inbox_context(sender, self.clock(), self.config.inbox)
        return core.Context(
            self._petitions(work, content), self.config.default_petition, sender.facts,
            content.privacy_version,
            offer_phone_link=channel == Channel.TELEGRAM and sender.supporter_id is not None
            and not sender.phone,
            distress_words=self.config.safeguarding.words,
            telegram_username=self.telegram_username,
            inbox_told=told, inbox_answer=answer, inbox_messages=kept)

    def _petitions(self, work: UnitOfWork, content: Content,
                   voices: bool = False) -> dict[str, core.PetitionView]:
        return Catalogue(content.petitions).views(
            self.counts(work.conn), self.voices(work.conn) if voices else None,
            today=self.clock().astimezone(ZoneInfo(self.config.broadcast.timezone)).date())

    def _spend(self, work: UnitOfWork, sender: people.Sender, outcome: Outcome,
               msg: Received, now: datetime) -> Verdict:
        """Count this answer against the person's reply budget (all their channels, every
        process: it is kept on their supporter row, which this transaction holds)."""
        if sender.supporter_id is None or (sender.opted_out_at is not None and not outcome.replies):
            # Nothing said (a stopped sender writing again) costs nothing, so their START
            # is never refused; a bare, opted-out identity has no budget until START.
            return Verdict.REPLY
        if sender.reply_times is None:  # their first answer: what an erasure left, if any
            sender.reply_times, sender.over_budget_at = people.budget_left(
                work.conn, self._budget_keys(msg, sender))
        noticed = sender.over_budget_at.timestamp() if sender.over_budget_at else None
        spent = budget.spend(sender.reply_times, noticed, now.timestamp(),
                             self.abuse.replies_per_window, self.abuse.window_seconds)
        people.save_budget(work, sender, spent.reply_times, None if spent.noticed_at is None
                           else datetime.fromtimestamp(spent.noticed_at, UTC))
        return spent.verdict

    def _budget_keys(self, msg: Received, sender: people.Sender) -> list[str]:
        return people.budget_keys(self.secret, msg.channel, msg.address,
                                  msg.phone or sender.phone)

    def _notice(self, content: Content) -> tuple[Message, ...]:
        return (Message(content.texts.render(Phrase("over_budget"), self.common)),)

    def voices(self, conn: Connection) -> dict[str, tuple[tuple[str, str], ...]]:
        """The newest approved voices per petition, read for each message: never kept in a
        process, so a voice erased or withdrawn is gone from every process at once."""
        rows = conn.execute(
            select(Petition.slug, Voice.text, Voice.nation)
            .join(Petition, Petition.id == Voice.petition_id)
            .where(Voice.status == "approved", Voice.publish_consent.is_(True))
            .order_by(Voice.moderated_at.desc()).limit(50)).all()
        fresh: dict[str, list[tuple[str, str]]] = {}
        for slug, text, nation in rows:
            if len(fresh.setdefault(slug, [])) < SHOWN_VOICES:
                fresh[slug].append((text, NATION_NAMES.get(nation or "", "a supporter")))
        return {k: tuple(v) for k, v in fresh.items()}

    def counts(self, conn: Connection | Session, fresh: bool = False) -> dict[str, int]:
        """Signatures collected here, by petition slug (bot.shell.counts)."""
        return self._counts.here(conn, fresh)


__all__ = ["Handled", "Received", "Service"]
