"""The shell around the conversation: load, call the core, apply its effects, in one
transaction per inbound message; nothing is sent from here, replies are returned."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import conversation as core
from bot import metrics, people
from bot.broadcast import milestone_drafts, skip_pending_for
from bot.budget import Budget, Verdict
from bot.config import Config
from bot.conversation import Channel, Inbound, Outcome
from bot.petitions import Catalogue
from bot.postcodes import postcode_area
from bot.render import Message
from bot.texts import Phrase, Texts
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
from models.sql import insert_ignore

log = logging.getLogger("petitionbot.inbound")

inbound_messages = cast(Table, InboundMessage.__table__)
SET_INBOUND_IDENTITY = (update(inbound_messages)
                        .where(inbound_messages.c.id == bindparam("p_id"))
                        .values(identity_id=bindparam("p_identity")))

COUNTS_TTL = 1.0  # seconds a process may show a count before re-reading it
LAST_INBOUND_PRECISION = timedelta(minutes=1)

VOICES_TTL = 60.0
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


@dataclass(frozen=True)
class Handled:
    replies: tuple[Message, ...]
    duplicate: bool = False
    identity_id: int | None = None
    step: str = ""
    signed: bool = False   # this message added a signature

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
                 budget: Budget | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.sessions = sessions
        self.budget = budget
        self.clock = clock
        self.catalogue = Catalogue(config.petitions)
        self.telegram_username = ""  # set once the bot knows its name: personal share links
        overrides = {**config.texts, "consent": config.privacy.consent,
                     "ask_updates": config.privacy.updates}
        if config.safeguarding.reply:
            overrides["signpost"] = config.safeguarding.reply
        self.texts = Texts(overrides)
        self._voices: tuple[float, dict[str, tuple[tuple[str, str], ...]]] = (0.0, {})
        self._counts: tuple[float, dict[str, int]] = (0.0, {})
        self._petition_ids: dict[str, int] = {}
        org = config.organisation
        self.common: dict[str, object] = {
            "organisation": org.name, "short_name": org.short_name, "contact": org.contact,
            "privacy_url": org.privacy_url, "retention": config.privacy.retention,
            "minimum_age": config.privacy.minimum_age, "max_length": core.MAX_NAME,
        }

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
            with self.sessions.begin() as session:
                handled = self._receive(session, msg)
        except Exception:
            metrics.observe_inbound(channel, "error", time.perf_counter() - started)
            raise
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

    def _receive(self, session: Session, msg: Received) -> Handled:
        now = self.clock()
        # The message's key first: a replay, even one that waited here for its first copy,
        # must touch nothing (finding the identity would recreate a person DELETE erased).
        inbound_id = insert_ignore(
            session, InboundMessage,
            {"channel": msg.channel.value, "provider_id": msg.provider_id,
             "identity_id": None, "body": msg.text[:1600], "received_at": now},
            ["channel", "provider_id"], returning=InboundMessage.id)
        if inbound_id is None:  # a replay: the first copy had the effect
            return Handled((), duplicate=True)
        who = people.find_or_create(session, msg.channel, msg.address, msg.phone, now)
        conn = session.connection()
        conn.execute(SET_INBOUND_IDENTITY, {"p_id": inbound_id, "p_identity": who.id})
        if msg.contact == "own" and msg.phone and msg.channel == Channel.TELEGRAM:
            people.link_phone(session, who, msg.phone, now)
        inbound = Inbound(msg.channel, msg.text, msg.provider_id, msg.opt_out, msg.contact)
        state = who.state
        facts = people.facts(session, who)
        offer_link = msg.channel == Channel.TELEGRAM and who.supporter_id is not None and (
            not who.phone)
        ctx = core.Context(self.catalogue.views(self.counts(session), self.voices(session),
                                                long_pages=msg.channel != Channel.SMS),
                           self.config.default_petition, facts, self.config.privacy.version,
                           offer_phone_link=offer_link,
                           distress_words=self.config.safeguarding.words)
        outcome = core.handle(state, inbound, ctx, now)  # pure: nothing happens until _apply
        # After STOP nothing is said, so nothing is spent: else a stopped sender who keeps
        # writing would get the over-budget notice, and then find their START refused.
        silent = facts.opted_out and not outcome.replies
        verdict = self.budget.spend(msg.channel.value, msg.address) if self.budget and (
            not silent) else Verdict.REPLY
        # A STOP is always acknowledged: an acknowledgement only follows a START, which is
        # itself budgeted, so this cannot be turned into unbounded replies.
        if verdict != Verdict.REPLY and not (core.wants_to_stop(inbound) and not facts.opted_out):
            who.last_inbound_at = now
            people.write(session, who)
            notice = (Message(self.texts.render(Phrase("over_budget"), self.common)),)
            return Handled(notice if verdict == Verdict.NOTICE else (), identity_id=who.id,
                           step=state.step.value)
        results = self._apply(session, outcome, who, msg, now)
        if any(isinstance(e, core.Sign | core.Erase) for e in outcome.effects):
            self._counts = (0.0, self._counts[1])  # the next reader sees the change
        if results.get("erased"):
            return Handled(self._render(outcome, results, msg.channel), identity_id=None,
                           step="erased")
        # Minute precision is plenty for WhatsApp's 24-hour window, and saves a write.
        last = who.last_inbound_at
        if last is None or now - last > LAST_INBOUND_PRECISION or last > now:
            who.last_inbound_at = now
        who.unreachable_at = None  # they wrote to us: reachable again
        people.write(session, who)
        people.save_conversation(session, who, outcome.state, now)
        replies = self._render(outcome, results, msg.channel)
        return Handled(replies, identity_id=who.id, step=outcome.state.step.value,
                       signed=bool(results.get("new_signature")))

    # Loading -------------------------------------------------------------------------

    def voices(self, session: Session) -> dict[str, tuple[tuple[str, str], ...]]:
        """The newest approved voices per petition, re-read at most once a minute."""
        loaded_at, voices = self._voices
        if time.monotonic() - loaded_at < VOICES_TTL:
            return voices
        rows = session.execute(
            select(Petition.slug, Voice.text, Voice.nation)
            .join(Petition, Petition.id == Voice.petition_id)
            .where(Voice.status == "approved", Voice.publish_consent.is_(True))
            .order_by(Voice.moderated_at.desc()).limit(50)).all()
        fresh: dict[str, list[tuple[str, str]]] = {}
        for slug, text, nation in rows:
            if len(fresh.setdefault(slug, [])) < SHOWN_VOICES:
                fresh[slug].append((text, NATION_NAMES.get(nation or "", "a supporter")))
        self._voices = (time.monotonic(), {k: tuple(v) for k, v in fresh.items()})
        return self._voices[1]

    def petition_id(self, session: Session, slug: str) -> int:
        """A petition's row id (it never changes, so it is remembered)."""
        if slug not in self._petition_ids:
            self._petition_ids[slug] = _petition_id(session, slug)
        return self._petition_ids[slug]

    def counts(self, session: Session, fresh: bool = False) -> dict[str, int]:
        """Signatures collected here, by petition slug (kept counters, no COUNT(*)); re-read
        at most once a second unless `fresh`, and at once after a signature here."""
        read_at, counts = self._counts
        if fresh or time.monotonic() - read_at > COUNTS_TTL:
            counts = {slug: count for slug, count in
                      session.execute(select(Petition.slug, Petition.signature_count)).all()}
            self._counts = (time.monotonic(), counts)
        return counts

    # Effects ---------------------------------------------------------------------------

    def _apply(self, session: Session, outcome: Outcome, who: people.Who, msg: Received,
               now: datetime) -> dict[str, Any]:
        results: dict[str, Any] = {}
        consent_ids: dict[tuple[str, str], int] = {}
        supporter_id = who.supporter_id
        for effect in outcome.effects:
            match effect:
                case core.GrantConsent(purpose, slug, version):
                    record = self._consent(session, supporter_id, self.petition_id(session, slug),
                                           purpose, "granted", version, msg, now)
                    consent_ids[(purpose.value, slug)] = record
                case core.Sign():
                    results.update(self._sign(session, effect, supporter_id, msg, now,
                                              consent_ids.get(("sign", effect.petition))))
                case core.SaveVoice(slug, text, publish, flagged):
                    self._save_voice(session, supporter_id, slug, text, publish, flagged,
                                     consent_ids.get(("publish_voice", slug)), now)
                case core.Subscribe(slug):
                    insert_ignore(session, Subscription, {
                        "identity_id": who.id, "petition_id": self.petition_id(session, slug),
                        "consent_id": consent_ids.get(("updates", slug)), "created_at": now},
                        ["identity_id", "petition_id"])
                case core.OptOut():
                    self._opt_out(session, who, msg, now)
                case core.OptIn():
                    who.opted_out_at = None
                    if who.supporter_id is None:
                        who.supporter_id = people.supporter_for(session, msg.phone, now)
                case core.Erase():
                    people.erase_supporter(session, supporter_id)
                    results["erased"] = True
        return results

    def _save_voice(self, session: Session, supporter_id: int | None, slug: str, text: str,
                    publish: bool, flagged: bool, consent_id: int | None,
                    now: datetime) -> None:
        petition_id = self.petition_id(session, slug)
        nation = session.scalar(select(Signature.nation).where(
            Signature.petition_id == petition_id, Signature.supporter_id == supporter_id))
        session.add(Voice(petition_id=petition_id, supporter_id=supporter_id, text=text,
                          nation=nation, status="pending", publish_consent=publish,
                          consent_id=consent_id, flagged=flagged, created_at=now))
        if flagged:
            log.warning("safeguarding: a supporter's message was flagged for staff (voice)")

    def _consent(self, session: Session, supporter_id: int | None, petition_id: int | None,
                 purpose: core.Purpose, action: str, version: str, msg: Received,
                 now: datetime) -> int:
        assert supporter_id is not None
        record = ConsentRecord(supporter_id=supporter_id, petition_id=petition_id,
                               purpose=purpose.value, action=action, text_version=version,
                               channel=msg.channel.value, evidence=msg.provider_id[:80],
                               created_at=now)
        session.add(record)
        session.flush()
        return record.id

    def _sign(self, session: Session, sign: core.Sign, supporter_id: int | None, msg: Received,
              now: datetime, consent_id: int | None) -> dict[str, Any]:
        assert supporter_id is not None
        petition_id = self.petition_id(session, sign.petition)
        existing = session.scalar(select(Signature.number).where(
            Signature.petition_id == petition_id, Signature.supporter_id == supporter_id))
        if existing is not None:  # signed meanwhile on another channel: never twice
            return {"number": existing, "count": f"{self._total(session, sign.petition):,}",
                    "petition": sign.petition}
        if consent_id is None:  # consent was given on an earlier message: link the latest
            consent_id = session.scalar(
                select(ConsentRecord.id).where(ConsentRecord.supporter_id == supporter_id,
                                               ConsentRecord.petition_id == petition_id,
                                               ConsentRecord.purpose == "sign")
                .order_by(ConsentRecord.id.desc()).limit(1))
        number, here = session.execute(
            update(Petition).where(Petition.id == petition_id)
            .values(signature_count=Petition.signature_count + 1,
                    last_number=Petition.last_number + 1)
            .returning(Petition.last_number, Petition.signature_count)).one()
        session.execute(update(ChannelCount).where(
            ChannelCount.petition_id == petition_id, ChannelCount.channel == msg.channel.value)
            .values(count=ChannelCount.count + 1))
        session.add(Signature(
            petition_id=petition_id, supporter_id=supporter_id, number=number, name=sign.name,
            postcode=sign.postcode or None,
            postcode_area=postcode_area(sign.postcode) if sign.postcode else None,
            country=sign.country or None, nation=sign.nation.value, channel=msg.channel.value,
            referral=sign.referral or None, consent_id=consent_id, signed_at=now))
        session.flush()
        external = self.config.petition(sign.petition).external_count
        milestone_drafts(session, self.config, sign.petition, here - 1 + external,
                         here + external, now)
        return {"number": number, "count": f"{here + external:,}", "petition": sign.petition,
                "new_signature": True}

    def _total(self, session: Session, slug: str) -> int:
        here = self.counts(session).get(slug, 0)
        return here + self.config.petition(slug).external_count

    def _opt_out(self, session: Session, who: people.Who, msg: Received,
                 now: datetime) -> None:
        who.opted_out_at = now
        skip_pending_for(session, who.id, "opted_out", now)  # even mid-broadcast
        subscriptions = session.scalars(
            select(Subscription).where(Subscription.identity_id == who.id)).all()
        for sub in subscriptions:
            if who.supporter_id is not None:
                self._consent(session, who.supporter_id, sub.petition_id,
                              core.Purpose.UPDATES, "withdrawn", self.config.privacy.version,
                              msg, now)
            session.delete(sub)

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


def _petition_id(session: Session, slug: str) -> int:
    pid = session.scalar(select(Petition.id).where(Petition.slug == slug))
    assert pid is not None, slug
    return pid


__all__ = ["Handled", "Received", "Service"]
