"""The shell around the conversation: load, call the core, apply its effects, in one
transaction per inbound message; nothing is sent from here, replies are returned."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import conversation as core
from bot.broadcast import milestone_drafts, skip_pending_for
from bot.budget import ReplyBudget, Verdict
from bot.config import Config
from bot.conversation import Channel, Inbound, Outcome, State, Step, SupporterView
from bot.petitions import Catalogue
from bot.postcodes import postcode_area
from bot.render import Message
from bot.texts import Phrase, Texts
from models import (
    ChannelCount,
    ConsentRecord,
    Conversation,
    Identity,
    InboundMessage,
    Petition,
    Signature,
    Subscription,
    Supporter,
    Voice,
)
from models.db import is_postgres
from models.sql import insert_ignore

log = logging.getLogger("petitionbot.inbound")

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


def utcnow() -> datetime:
    return datetime.now(UTC)


class Service:
    def __init__(self, config: Config, sessions: sessionmaker[Session],
                 budget: ReplyBudget | None = None,
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
        with self.sessions.begin() as session:
            handled = self._receive(session, msg)
        log.info("inbound channel=%s identity=%s step=%s duplicate=%s replies=%d ms=%.1f",
                 msg.channel.value, handled.identity_id, handled.step, handled.duplicate,
                 len(handled.replies), (time.perf_counter() - started) * 1000)
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
        identity = self._identity(session, msg, now)
        session.execute(update(InboundMessage).where(InboundMessage.id == inbound_id)
                        .values(identity_id=identity.id))
        if msg.contact == "own" and msg.phone and msg.channel == Channel.TELEGRAM:
            self._link_phone(session, identity, msg.phone, now)
        inbound = Inbound(msg.channel, msg.text, msg.provider_id, msg.opt_out, msg.contact)
        conv = session.get(Conversation, identity.id)
        state = _state(conv)
        facts = self._facts(session, identity)
        offer_link = msg.channel == Channel.TELEGRAM and identity.supporter_id is not None and (
            session.scalar(select(Supporter.phone).where(Supporter.id == identity.supporter_id))
            is None)
        ctx = core.Context(self.catalogue.views(self.counts(session), self.voices(session)),
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
            identity.last_inbound_at = now
            notice = (Message(self.texts.render(Phrase("over_budget"), self.common)),)
            return Handled(notice if verdict == Verdict.NOTICE else (), identity_id=identity.id,
                           step=state.step.value)
        results = self._apply(session, outcome, identity, msg, now)
        if results.get("erased"):
            return Handled(self._render(outcome, results, msg.channel), identity_id=None,
                           step="erased")
        identity.last_inbound_at = now
        if identity.unreachable_at is not None:  # they wrote to us: reachable again
            identity.unreachable_at = None
        self._save(session, identity, conv, outcome.state, now)
        replies = self._render(outcome, results, msg.channel)
        return Handled(replies, identity_id=identity.id, step=outcome.state.step.value)

    # Loading -------------------------------------------------------------------------

    def _identity(self, session: Session, msg: Received, now: datetime) -> Identity:
        """Find or create the sender's identity, serialising all work for one person."""
        found = _find_identity(session, msg)
        if found is None:
            # A phone number names the person on every channel, so their supporter comes
            # first; a Telegram chat gets its supporter once its identity row is locked.
            supporter_id = self._supporter_for(session, msg.phone, now) if msg.phone else None
            insert_ignore(session, Identity, {
                "supporter_id": supporter_id, "channel": msg.channel.value,
                "address": msg.address, "created_at": now}, ["channel", "address"])
            found = _find_identity(session, msg)
            assert found is not None
        if found.supporter_id is None:
            if is_postgres(session):
                session.execute(select(Identity.id).where(Identity.id == found.id)
                                .with_for_update())
                session.refresh(found)
            if found.supporter_id is None and found.opted_out_at is None:
                found.supporter_id = self._supporter_for(session, msg.phone, now)
                session.flush()
        elif is_postgres(session):
            # One lock per person, whatever the channel: two messages at once, or SMS and
            # WhatsApp at once, are handled one after the other.
            locked = session.scalar(select(Supporter.id).where(Supporter.id == found.supporter_id)
                                    .with_for_update())
            if locked is None:  # erased (DELETE) while we waited: a stranger from now on
                session.expunge(found)
                return self._identity(session, msg, now)
        session.refresh(found)
        return found

    def _link_phone(self, session: Session, identity: Identity, phone: str,
                    now: datetime) -> None:
        """The sender proved `phone` is theirs: this identity joins that person."""
        owner = session.scalar(select(Supporter).where(Supporter.phone == phone))
        current = session.get(Supporter, identity.supporter_id) if identity.supporter_id else None
        if owner is None:
            if current is not None and current.phone is None:
                current.phone = phone
            else:
                identity.supporter_id = self._supporter_for(session, phone, now)
            session.flush()
            return
        if current is None or owner.id == current.id:
            identity.supporter_id = owner.id
            session.flush()
            return
        if is_postgres(session):
            session.execute(select(Supporter.id).where(Supporter.id == owner.id)
                            .with_for_update())
        merge_supporters(session, source=current.id, target=owner.id)
        session.refresh(identity)

    def _supporter_for(self, session: Session, phone: str, now: datetime) -> int:
        if phone:
            insert_ignore(session, Supporter, {"phone": phone, "created_at": now}, ["phone"])
            supporter_id = session.scalar(select(Supporter.id).where(Supporter.phone == phone))
            assert supporter_id is not None
            return supporter_id
        supporter = Supporter(created_at=now)
        session.add(supporter)
        session.flush()
        return supporter.id

    def _facts(self, session: Session, identity: Identity) -> SupporterView:
        signatures = session.execute(
            select(Signature, Petition.slug).join(Petition, Petition.id == Signature.petition_id)
            .where(Signature.supporter_id == identity.supporter_id)).all()
        subscribed = session.scalars(
            select(Petition.slug).join(Subscription, Subscription.petition_id == Petition.id)
            .where(Subscription.identity_id == identity.id)).all()
        return SupporterView(
            opted_out=identity.opted_out_at is not None,
            signatures=tuple(core.SignatureView(
                petition=slug, number=s.number, signed_at=s.signed_at, channel=Channel(s.channel),
                name=s.name, postcode=s.postcode or "", country=s.country or "")
                for s, slug in signatures),
            subscribed=frozenset(subscribed))

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

    def counts(self, session: Session) -> dict[str, int]:
        """Signatures collected here, by petition slug (kept counters, no COUNT(*))."""
        return {slug: count for slug, count in
                session.execute(select(Petition.slug, Petition.signature_count)).all()}

    # Effects ---------------------------------------------------------------------------

    def _apply(self, session: Session, outcome: Outcome, identity: Identity, msg: Received,
               now: datetime) -> dict[str, Any]:
        results: dict[str, Any] = {}
        consent_ids: dict[tuple[str, str], int] = {}
        supporter_id = identity.supporter_id
        for effect in outcome.effects:
            match effect:
                case core.GrantConsent(purpose, slug, version):
                    record = self._consent(session, supporter_id, _petition_id(session, slug),
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
                        "identity_id": identity.id, "petition_id": _petition_id(session, slug),
                        "consent_id": consent_ids.get(("updates", slug)), "created_at": now},
                        ["identity_id", "petition_id"])
                case core.OptOut():
                    self._opt_out(session, identity, msg, now)
                case core.OptIn():
                    identity.opted_out_at = None
                    if identity.supporter_id is None:
                        identity.supporter_id = self._supporter_for(session, msg.phone, now)
                case core.Erase():
                    erase_supporter(session, supporter_id)
                    results["erased"] = True
        return results

    def _save_voice(self, session: Session, supporter_id: int | None, slug: str, text: str,
                    publish: bool, flagged: bool, consent_id: int | None,
                    now: datetime) -> None:
        petition_id = _petition_id(session, slug)
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
        petition_id = _petition_id(session, sign.petition)
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
        external = sum(e.count for e in self.config.petition(sign.petition).external)
        milestone_drafts(session, self.config, sign.petition, here - 1 + external,
                         here + external, now)
        return {"number": number, "count": f"{here + external:,}", "petition": sign.petition}

    def _total(self, session: Session, slug: str) -> int:
        here = self.counts(session).get(slug, 0)
        return here + sum(e.count for e in self.config.petition(slug).external)

    def _opt_out(self, session: Session, identity: Identity, msg: Received,
                 now: datetime) -> None:
        identity.opted_out_at = now
        skip_pending_for(session, identity.id, "opted_out", now)  # even mid-broadcast
        subscriptions = session.scalars(
            select(Subscription).where(Subscription.identity_id == identity.id)).all()
        for sub in subscriptions:
            if identity.supporter_id is not None:
                self._consent(session, identity.supporter_id, sub.petition_id,
                              core.Purpose.UPDATES, "withdrawn", self.config.privacy.version,
                              msg, now)
            session.delete(sub)

    def _save(self, session: Session, identity: Identity, conv: Conversation | None,
              state: State, now: datetime) -> None:
        data = {k: v for k, v in dataclasses.asdict(state).items() if k != "step"}
        data["options"] = list(state.options)
        if conv is None:
            session.add(Conversation(identity_id=identity.id, step=state.step.value, data=data,
                                     updated_at=now))
        elif conv.step != state.step.value or conv.data != data:
            conv.step, conv.data, conv.updated_at = state.step.value, data, now

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


def erase_supporter(session: Session, supporter_id: int | None) -> None:
    """Really delete a person: signatures (counts follow), consent, subscriptions,
    conversations and identities; an identity that said STOP stays, bare, as suppression."""
    if supporter_id is None:
        return
    for petition_id, channel in session.execute(
            select(Signature.petition_id, Signature.channel)
            .where(Signature.supporter_id == supporter_id)).all():
        _uncount(session, petition_id, channel)
    identity_ids = list(session.scalars(
        select(Identity.id).where(Identity.supporter_id == supporter_id)))
    session.execute(delete(Signature).where(Signature.supporter_id == supporter_id))
    session.execute(delete(Voice).where(Voice.supporter_id == supporter_id))
    _delete_where(session, Subscription, Subscription.identity_id, identity_ids)
    _delete_where(session, Conversation, Conversation.identity_id, identity_ids)
    session.execute(update(InboundMessage).where(InboundMessage.identity_id.in_(identity_ids))
                    .values(identity_id=None, body=None))
    session.execute(delete(ConsentRecord).where(ConsentRecord.supporter_id == supporter_id))
    session.execute(update(Identity).where(Identity.supporter_id == supporter_id,
                                           Identity.opted_out_at.is_not(None))
                    .values(supporter_id=None, last_inbound_at=None, unreachable_at=None))
    session.execute(delete(Identity).where(Identity.supporter_id == supporter_id))
    session.execute(delete(Supporter).where(Supporter.id == supporter_id))
    session.expunge_all()


def merge_supporters(session: Session, source: int, target: int) -> None:
    """Fold one person's records into another's; a petition both signed counts once."""
    target_petitions = set(session.scalars(
        select(Signature.petition_id).where(Signature.supporter_id == target)))
    for sig in session.scalars(select(Signature).where(Signature.supporter_id == source)).all():
        if sig.petition_id in target_petitions:
            _uncount(session, sig.petition_id, sig.channel)
            session.delete(sig)
        else:
            sig.supporter_id = target
    session.flush()
    for model in (ConsentRecord, Identity):
        session.execute(update(model).where(model.supporter_id == source)
                        .values(supporter_id=target))
    session.execute(delete(Supporter).where(Supporter.id == source))


def _uncount(session: Session, petition_id: int, channel: str) -> None:
    session.execute(update(Petition).where(Petition.id == petition_id)
                    .values(signature_count=Petition.signature_count - 1))
    session.execute(update(ChannelCount).where(ChannelCount.petition_id == petition_id,
                                               ChannelCount.channel == channel)
                    .values(count=ChannelCount.count - 1))


def _delete_where(session: Session, model: Any, column: Any, ids: Iterable[int]) -> None:
    session.execute(delete(model).where(column.in_(list(ids))))


def _find_identity(session: Session, msg: Received) -> Identity | None:
    return session.scalar(select(Identity).where(Identity.channel == msg.channel.value,
                                                 Identity.address == msg.address))


def _petition_id(session: Session, slug: str) -> int:
    pid = session.scalar(select(Petition.id).where(Petition.slug == slug))
    assert pid is not None, slug
    return pid


def _state(conv: Conversation | None) -> State:
    """The stored conversation as the core's State (every field, whatever it is called)."""
    if conv is None:
        return State()
    data = {**conv.data, "step": conv.step}
    try:
        return State(**{f.name: _field(f.name, data[f.name])
                        for f in dataclasses.fields(State) if f.name in data})
    except (TypeError, ValueError):  # written by an older version: start again, keep the person
        return State()


def _field(name: str, value: Any) -> Any:
    if name in ("step", "resume"):
        return Step(value)
    if name == "options":
        return tuple(str(o) for o in value)
    if name == "page":
        return int(value)
    return str(value)
