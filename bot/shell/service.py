"""The shell around the conversation: load, call the core, apply its effects, in one
transaction per inbound message; nothing is sent from here, replies are returned."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.core import budget
from bot.core import conversation as core
from bot.core.budget import Verdict
from bot.core.conversation import Channel, Inbound, Outcome
from bot.core.inputs import storable
from bot.core.postcodes import postcode_area
from bot.core.render import Message
from bot.core.texts import Phrase, Texts
from bot.infra import metrics
from bot.infra.config import Config
from bot.shell import people
from bot.shell.broadcast import milestone_drafts, skip_pending_for
from bot.shell.petitions import Catalogue
from models import (
    ChannelCount,
    ConsentRecord,
    Identity,
    InboundMessage,
    Petition,
    Signature,
    Subscription,
    Voice,
)
from models.base import BigId
from models.db import lock_deadline, transaction
from models.prepared import Prepared
from models.sql import insert_ignore, insert_ignore_statement

log = logging.getLogger("petitionbot.inbound")

inbound_messages = cast(Table, InboundMessage.__table__)
petitions = cast(Table, Petition.__table__)
channel_counts = cast(Table, ChannelCount.__table__)
signatures = cast(Table, Signature.__table__)
consent_records = cast(Table, ConsentRecord.__table__)
subscriptions = cast(Table, Subscription.__table__)

# Built once: every inbound message runs some of these.
NEW_SUBSCRIPTION = Prepared(lambda dialect: insert_ignore_statement(
    dialect, subscriptions, ("identity_id", "petition_id", "consent_id", "created_at"),
    ("identity_id", "petition_id")))
NEW_CONSENT = Prepared(insert(consent_records)
               .values({c: bindparam(f"p_{c}") for c in (
                   "supporter_id", "petition_id", "purpose", "action", "text_version",
                   "channel", "evidence", "created_at")})
               .returning(consent_records.c.id))
COUNT_SIGNATURE = Prepared(update(petitions).where(petitions.c.id == bindparam("p_petition"))
                   .values(signature_count=petitions.c.signature_count + 1,
                           last_number=petitions.c.last_number + 1)
                   .returning(petitions.c.last_number, petitions.c.signature_count))
COUNT_CHANNEL = Prepared(update(channel_counts)
                 .where(channel_counts.c.petition_id == bindparam("p_petition"),
                        channel_counts.c.channel == bindparam("p_channel"))
                 .values(count=channel_counts.c.count + 1))
LATEST_SIGN_CONSENT = (select(func.max(consent_records.c.id))
                       .where(consent_records.c.supporter_id == bindparam("p_supporter"),
                              consent_records.c.petition_id == bindparam("p_petition"),
                              consent_records.c.purpose == "sign")
                       .scalar_subquery())
NEW_SIGNATURE = Prepared(insert(signatures).values(
    petition_id=bindparam("p_petition"), supporter_id=bindparam("p_supporter"),
    number=bindparam("p_number"), name=bindparam("p_name"), postcode=bindparam("p_postcode"),
    postcode_area=bindparam("p_postcode_area"), country=bindparam("p_country"),
    nation=bindparam("p_nation"), channel=bindparam("p_channel"),
    referral=bindparam("p_referral"),
    consent_id=func.coalesce(bindparam("p_consent", type_=BigId), LATEST_SIGN_CONSENT),
    signed_at=bindparam("p_now")))

# How long an inbound message waits for SQLite's write lock before its webhook answers 503
# (the provider retries): inside Twilio's 15 s timeout, so the answer is still heard.
INBOUND_PATIENCE = 10.0
RACE_ATTEMPTS = 2
KEPT_CONNECTIONS = 4     # idle connections kept for inbound messages, at most
KEEP_CONNECTION = 300.0  # seconds before one goes back to the pool
COUNTS_TTL = 1.0  # seconds a process may show a count before re-reading it
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
    signed: bool = False   # this message added a signature
    count: tuple[str, int] | None = None  # (petition, signatures here) after it did

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


def utcnow() -> datetime:
    return datetime.now(UTC)


class Service:
    def __init__(self, config: Config, sessions: sessionmaker[Session],
                 clock: Callable[[], datetime] = utcnow, secret: str = "") -> None:
        self.config = config
        self.sessions = sessions
        self.secret = secret.encode()  # keys the hashes that stand in for addresses
        self.abuse = config.abuse  # the reply budget (tests may set a smaller one)
        self.clock = clock
        self.catalogue = Catalogue(config.petitions)
        self.telegram_username = ""  # set once the bot knows its name: personal share links
        overrides = {**config.texts, "consent": config.privacy.consent,
                     "ask_updates": config.privacy.updates}
        if config.safeguarding.reply:
            overrides["signpost"] = config.safeguarding.reply
        self.texts = Texts(overrides)
        self._counts: tuple[float, dict[str, int]] = (0.0, {})
        self._petition_ids: dict[str, int] = {}
        self._idle: list[tuple[Connection, float]] = []  # see _take_connection
        org = config.organisation
        self.common: dict[str, object] = {
            "organisation": org.name, "short_name": org.short_name, "contact": org.contact,
            "privacy_url": org.privacy_url, "retention": config.privacy.retention,
            "minimum_age": config.privacy.minimum_age, "max_length": core.MAX_NAME,
        }

    @property
    def engine(self) -> Engine:
        """The sessions' engine: inbound messages run on a Connection, without the ORM."""
        engine: Engine = self.sessions.kw["bind"]
        return engine

    @functools.cached_property
    def _one_at_a_time(self) -> threading.Lock | None:
        """See _turn: SQLite only (decided at the first message: tests of the core build a
        Service without a database)."""
        return threading.Lock() if self.engine.dialect.name == "sqlite" else None

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """SQLite: this process's inbound messages one at a time, each on the connection the
        last one used. They would queue for the write lock anyway; queued before taking a
        connection, one connection does every write, so its page cache stays valid (SQLite
        empties a connection's cache whenever another connection has written), and the
        threads waiting sleep instead of taking the GIL from the one writing."""
        if self._one_at_a_time is None:
            yield
            return
        deadline = time.monotonic() + INBOUND_PATIENCE  # the turn and the write lock, both
        if not self._one_at_a_time.acquire(timeout=INBOUND_PATIENCE):
            raise OperationalError("inbound message", None, TimeoutError(
                "this process's earlier messages took too long"))
        token = lock_deadline.set(deadline)
        try:
            yield
        finally:
            lock_deadline.reset(token)
            self._one_at_a_time.release()

    def _take_connection(self) -> tuple[Connection, float]:
        """A Connection for one inbound message, with when it was first taken from the pool.
        Connections are kept between messages (taking one from the pool and giving it back
        cost a tenth of a message's time), up to KEPT_CONNECTIONS idle, and handed back
        after KEEP_CONNECTION seconds, so the pool's own recycling still applies."""
        while self._idle:
            try:
                conn, since = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if conn.engine is self.engine and not conn.closed and not conn.invalidated and (
                    time.monotonic() - since < KEEP_CONNECTION):
                return conn, since
            conn.close()
        return self.engine.connect(), time.monotonic()

    def _return_connection(self, conn: Connection, since: float) -> None:
        if len(self._idle) < KEPT_CONNECTIONS and not conn.invalidated:
            self._idle.append((conn, since))
        else:
            conn.close()

    def _drop_idle(self) -> None:
        while self._idle:
            try:
                conn, _ = self._idle.pop()
            except IndexError:
                return
            conn.close()

    def share_link(self, slug: str, number: int) -> str:
        """A signer's own Telegram link: whoever signs through it is credited to them."""
        code = self.config.petition(slug).code
        return f"https://t.me/{self.telegram_username}?start={code}_r{number}"

    def sync_petitions(self) -> None:
        """Give every configured petition its row and channel counters."""
        with self.sessions.begin() as session:
            now = self.clock()
            for petition in self.config.petitions:
                insert_ignore(session, Petition, {"slug": petition.slug, "signature_count": 0,
                                                  "last_number": 0, "created_at": now},
                              ["slug"])
                pid = session.scalar(select(Petition.id).where(Petition.slug == petition.slug))
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
            for attempt in range(1, RACE_ATTEMPTS + 1):
                try:
                    handled = self._in_turn(msg)
                    break
                except (IntegrityError, people.ConcurrentUpdate):
                    # Lost a race with another transaction (which has now committed): the
                    # message is handled again from the start, against what it wrote.
                    if attempt == RACE_ATTEMPTS:
                        raise
        except Exception as error:
            if getattr(error, "connection_invalidated", False):
                self._drop_idle()  # the database went away: the kept ones are stale too
            metrics.observe_inbound(channel, "error", time.perf_counter() - started)
            raise
        if handled.count is not None:  # committed: show the new count from now on
            read_at, counts = self._counts
            self._counts = (read_at, {**counts, handled.count[0]: handled.count[1]})
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

    def _in_turn(self, msg: Received) -> Handled:
        with self._turn():
            conn, since = self._take_connection()
            try:
                with transaction(conn):
                    return self._receive(conn, msg)
            finally:
                self._return_connection(conn, since)

    def _receive(self, conn: Connection, msg: Received) -> Handled:
        now = self.clock()
        locked = people.lock(conn, msg.channel, msg.address)
        # The message's key before anything is written: a replay, even one that waited here
        # for its first copy, must touch nothing (creating the sender would bring back a
        # person DELETE erased). It gets the first copy's answer again: the provider retries
        # when that answer was lost on the way.
        who, inbound_id, settled = people.find_and_record(
            conn, msg.channel, msg.address, locked, msg.text[:1600], msg.provider_id, now)
        if inbound_id is None:
            stored = people.replies_of(conn, msg.channel, msg.provider_id)
            return Handled(tuple(Message(r["text"], tuple(r["options"])) for r in stored),
                           duplicate=True)
        if who is None:
            who = people.create(conn, msg.channel, msg.address, msg.phone, now)
        who = people.settle(conn, who, locked, msg.channel, msg.address, msg.phone, now)
        if msg.contact == "own" and msg.phone and msg.channel == Channel.TELEGRAM:
            people.link_phone(conn, who, msg.phone, now)
        if who.rows_for != who.supporter_id:  # linked to a supporter since FIND (written)
            who = people.find(conn, msg.channel, msg.address) or who
        handled = self._answer(conn, who, msg, now)
        if not settled or handled.replies or handled.step == "erased":
            people.finish_inbound(conn, inbound_id, handled.identity_id, [
                {"text": m.text, "options": list(m.options)} for m in handled.replies],
                erased=handled.step == "erased")
        return handled

    def _answer(self, conn: Connection, who: people.Who, msg: Received,
                now: datetime) -> Handled:
        """Call the core for the sender found, spend their reply budget, apply what it
        decided, and return the replies."""
        inbound = Inbound(msg.channel, msg.text, msg.provider_id, msg.opt_out, msg.contact)
        state = who.state
        facts = people.facts(who)
        offer_link = msg.channel == Channel.TELEGRAM and who.supporter_id is not None and (
            not who.phone)
        def context(voices: dict[str, tuple[tuple[str, str], ...]]) -> core.Context:
            return core.Context(self.catalogue.views(self.counts(conn), voices,
                                                     long_pages=msg.channel != Channel.SMS),
                                self.config.default_petition, facts,
                                self.config.privacy.version, offer_phone_link=offer_link,
                                distress_words=self.config.safeguarding.words)

        outcome = core.handle(state, inbound, context({}), now)  # pure: nothing happens yet
        if any(reply.phrase.key == "info" for reply in outcome.replies):
            # Only INFO shows supporters' voices: read them (never kept in a process, so an
            # erased voice is gone everywhere at once) and ask the core again.
            outcome = core.handle(state, inbound, context(self.voices(conn)), now)
        verdict = self._spend(conn, who, facts, outcome, msg, now)
        if verdict != Verdict.REPLY and not core.binding_over_budget(state, outcome):
            who.last_inbound_at = now  # nothing happens that they are not told about
            people.write(conn, who)
            return Handled(self._notice() if verdict == Verdict.NOTICE else (),
                           identity_id=who.id, step=state.step.value)
        # Over budget, STOP, START and DELETE (with its confirmation) still take effect.
        # Their own answer takes the notice's one slot (a STOP is acknowledged, DELETE's
        # question asked); past it they go unanswered, and a DELETE whose question was not
        # asked does not erase on a later YES (it asks first).
        if verdict == Verdict.SILENT:
            unasked = replace(outcome.state, options=()) if (
                outcome.state.step == core.Step.DELETING) else outcome.state
            outcome = replace(outcome, state=unasked, replies=())
        results = self._apply(conn, outcome, who, facts, msg, now)
        said = self._render(outcome, results, msg.channel)
        if any(isinstance(e, core.Erase) for e in outcome.effects):
            self._counts = (0.0, self._counts[1])  # the next reader sees the change
        if results.get("erased"):
            # Erasing oneself must not refill the budget: it outlives them, keyed by hashes.
            people.leave_budget(conn, self._budget_keys(msg, who), who.reply_times or [],
                                who.over_budget_at, now)
            return Handled(said, identity_id=None, step="erased")
        # Minute precision is plenty for WhatsApp's 24-hour window, and saves a write.
        last = who.last_inbound_at
        if last is None or now - last > LAST_INBOUND_PRECISION or last > now:
            who.last_inbound_at = now
        who.unreachable_at = None  # they wrote to us: reachable again
        people.write(conn, who)
        people.save_conversation(conn, who, outcome.state, now)
        return Handled(said, identity_id=who.id, step=outcome.state.step.value,
                       signed=bool(results.get("new_signature")), count=results.get("counted"))

    def _spend(self, conn: Connection, who: people.Who, facts: core.SupporterView,
               outcome: Outcome, msg: Received, now: datetime) -> Verdict:
        """Count this answer against the person's reply budget (all their channels, every
        process: it is kept on their supporter row, which this transaction holds)."""
        if who.supporter_id is None or (facts.opted_out and not outcome.replies):
            # Nothing said (a stopped sender writing again) costs nothing, so their START
            # is never refused; a bare, opted-out identity has no budget until START.
            return Verdict.REPLY
        if who.reply_times is None:  # their first answer: what an erasure left, if any
            who.reply_times, who.over_budget_at = people.budget_left(
                conn, self._budget_keys(msg, who))
        noticed = who.over_budget_at.timestamp() if who.over_budget_at else None
        spent = budget.spend(who.reply_times, noticed, now.timestamp(),
                             self.abuse.replies_per_window, self.abuse.window_seconds)
        people.save_budget(conn, who, spent.reply_times, None if spent.noticed_at is None else
                           datetime.fromtimestamp(spent.noticed_at, UTC))
        return spent.verdict

    def _budget_keys(self, msg: Received, who: people.Who) -> list[str]:
        return people.budget_keys(self.secret, msg.channel, msg.address,
                                  msg.phone or who.phone)

    def _notice(self) -> tuple[Message, ...]:
        return (Message(self.texts.render(Phrase("over_budget"), self.common)),)

    # Loading -------------------------------------------------------------------------

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

    def petition_id(self, conn: Connection | Session, slug: str) -> int:
        """A petition's row id (it never changes, so it is remembered)."""
        if slug not in self._petition_ids:
            pid = conn.scalar(select(Petition.id).where(Petition.slug == slug))
            assert pid is not None, slug
            self._petition_ids[slug] = pid
        return self._petition_ids[slug]

    def counts(self, conn: Connection | Session, fresh: bool = False) -> dict[str, int]:
        """Signatures collected here, by petition slug (kept counters, no COUNT(*)); re-read
        at most once a second unless `fresh`; a signature here updates it at once."""
        read_at, counts = self._counts
        if fresh or time.monotonic() - read_at > COUNTS_TTL:
            counts = {slug: count for slug, count in
                      conn.execute(select(Petition.slug, Petition.signature_count)).all()}
            self._counts = (time.monotonic(), counts)
        return counts

    # Effects ---------------------------------------------------------------------------

    def _apply(self, conn: Connection, outcome: Outcome, who: people.Who,
               facts: core.SupporterView, msg: Received, now: datetime) -> dict[str, Any]:
        results: dict[str, Any] = {}
        consent_ids: dict[tuple[str, str], int] = {}
        supporter_id = who.supporter_id
        for effect in outcome.effects:
            match effect:
                case core.GrantConsent(purpose, slug, version):
                    record = self._consent(conn, supporter_id, self.petition_id(conn, slug),
                                           purpose, "granted", version, msg, now)
                    consent_ids[(purpose.value, slug)] = record
                case core.Sign():
                    results.update(self._sign(conn, effect, supporter_id, facts, msg, now,
                                              consent_ids.get(("sign", effect.petition))))
                case core.SaveVoice(slug, text, publish, flagged):
                    self._save_voice(conn, supporter_id, slug, text, publish, flagged,
                                     consent_ids.get(("publish_voice", slug)), now)
                case core.Subscribe(slug):
                    NEW_SUBSCRIPTION.run(conn, {
                        "p_identity_id": who.id, "p_petition_id": self.petition_id(conn, slug),
                        "p_consent_id": consent_ids.get(("updates", slug)), "p_created_at": now})
                case core.OptOut():
                    self._opt_out(conn, who, msg, now)
                case core.OptIn():
                    who.opted_out_at = None
                    if who.supporter_id is None:
                        who.supporter_id = people.supporter_for(conn, msg.phone, now)
                case core.Erase():
                    people.erase_supporter(conn, supporter_id)
                    results["erased"] = True
        return results

    def _save_voice(self, conn: Connection, supporter_id: int | None, slug: str, text: str,
                    publish: bool, flagged: bool, consent_id: int | None,
                    now: datetime) -> None:
        petition_id = self.petition_id(conn, slug)
        nation = conn.scalar(select(Signature.nation).where(
            Signature.petition_id == petition_id, Signature.supporter_id == supporter_id))
        conn.execute(insert(Voice).values(
            petition_id=petition_id, supporter_id=supporter_id, text=text, nation=nation,
            status="pending", publish_consent=publish, consent_id=consent_id,
            flagged=flagged, created_at=now))
        if flagged:
            log.warning("safeguarding: a supporter's message was flagged for staff (voice)")

    def _consent(self, conn: Connection, supporter_id: int | None, petition_id: int | None,
                 purpose: core.Purpose, action: str, version: str, msg: Received,
                 now: datetime) -> int:
        assert supporter_id is not None
        record_id: int = NEW_CONSENT.scalar(conn, {
            "p_supporter_id": supporter_id, "p_petition_id": petition_id,
            "p_purpose": purpose.value, "p_action": action, "p_text_version": version,
            "p_channel": msg.channel.value, "p_evidence": msg.provider_id[:80],
            "p_created_at": now})
        return record_id

    def _sign(self, conn: Connection, sign: core.Sign, supporter_id: int | None,
              facts: core.SupporterView, msg: Received, now: datetime,
              consent_id: int | None) -> dict[str, Any]:
        assert supporter_id is not None
        # `facts` were read in this transaction, after the person was locked (PostgreSQL)
        # or with the write lock held (SQLite): a signature on another channel shows here.
        existing = facts.signature(sign.petition)
        if existing is not None:  # signed meanwhile on another channel: never twice
            return {"number": existing.number, "petition": sign.petition,
                    "count": f"{self._total(conn, sign.petition):,}"}
        petition_id = self.petition_id(conn, sign.petition)
        counted = COUNT_SIGNATURE.first(conn, {"p_petition": petition_id})
        assert counted is not None, sign.petition
        number, here = counted
        COUNT_CHANNEL.run(conn, {"p_petition": petition_id, "p_channel": msg.channel.value})
        # Without consent given in this message, the signature cites the latest given.
        NEW_SIGNATURE.run(conn, {
            "p_petition": petition_id, "p_supporter": supporter_id, "p_number": number,
            "p_name": sign.name, "p_postcode": sign.postcode or None,
            "p_postcode_area": postcode_area(sign.postcode) if sign.postcode else None,
            "p_country": sign.country or None, "p_nation": sign.nation.value,
            "p_channel": msg.channel.value, "p_referral": sign.referral or None,
            "p_consent": consent_id, "p_now": now})
        external = self.config.petition(sign.petition).external_count
        milestone_drafts(conn, self.config, sign.petition, here - 1 + external,
                         here + external, now)
        return {"number": number, "count": f"{here + external:,}", "petition": sign.petition,
                "new_signature": True, "counted": (sign.petition, here)}

    def _total(self, conn: Connection, slug: str) -> int:
        here = self.counts(conn).get(slug, 0)
        return here + self.config.petition(slug).external_count

    def _opt_out(self, conn: Connection, who: people.Who, msg: Received,
                 now: datetime) -> None:
        who.opted_out_at = now
        skip_pending_for(conn, who.id, "opted_out", now)  # even mid-broadcast
        subscribed = conn.scalars(select(Subscription.petition_id).where(
            Subscription.identity_id == who.id)).all()
        for petition_id in subscribed:
            if who.supporter_id is not None:
                self._consent(conn, who.supporter_id, petition_id, core.Purpose.UPDATES,
                              "withdrawn", self.config.privacy.version, msg, now)
        if subscribed:
            conn.execute(delete(Subscription).where(Subscription.identity_id == who.id))

    def _render(self, outcome: Outcome, results: dict[str, Any],
                channel: Channel) -> tuple[Message, ...]:
        messages = []
        for reply in outcome.replies:
            phrase = reply.phrase
            if phrase.key == "signed":
                late = {"number": results.get("number"), "count": results.get("count")}
                if channel == Channel.TELEGRAM and self.telegram_username:
                    late["share_link"] = self.share_link(results["petition"], results["number"])
                phrase = Phrase(phrase.key, {**phrase.params, **late})
            messages.append(Message(self.texts.render(phrase, self.common), reply.options))
        return tuple(messages)


__all__ = ["Handled", "Received", "Service"]
