"""Supporters for staff: find a person, show what we hold, export it (a subject access
request) and erase it. Lists mask phone numbers; one person's own page and export do not.

The console and the staff API both open, export and erase through `view`, `export` and
`erase` here, so the rules and the audit entries (by supporter id and masked number, never
the data itself) are the same whichever way staff come."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.core.phones import mask, normalise_phone
from bot.infra.config import Organisation
from bot.shell import inbox
from bot.shell.people import erase_supporter, lock_supporter
from bot.shell.staff import audit
from models import (
    Announcement,
    ConsentRecord,
    Conversation,
    Delivery,
    Identity,
    InboundMessage,
    Petition,
    Signature,
    Subscription,
    Supporter,
    Voice,
)

LIMIT = 50


@dataclass
class Found:
    """One person in a list of search results (no full phone number)."""

    id: int
    names: list[str] = field(default_factory=list)
    phone: str = ""          # masked
    channels: list[str] = field(default_factory=list)
    signed: list[str] = field(default_factory=list)  # petition slugs
    since: dt.datetime | None = None


def find(session: Session, query: str, limit: int = LIMIT) -> list[Found]:
    """People whose phone number is `query`, or whose signed name contains it."""
    query = query.strip()
    if not query:
        return []
    ids: list[int | None] = []
    phone = normalise_phone(query)
    if phone is not None:
        ids += by_phone(session, phone)
    if query.lstrip("-").isdigit():  # a Telegram chat id
        ids += session.scalars(select(Identity.supporter_id).where(
            Identity.channel == "telegram", Identity.address == query,
            Identity.supporter_id.is_not(None))).all()
    if len(query) >= 2 and not ids:
        ids += session.scalars(
            select(Signature.supporter_id).where(
                func.lower(Signature.name).contains(query.lower(), autoescape=True))
            .distinct().order_by(Signature.supporter_id).limit(limit)).all()
    found = [i for i in dict.fromkeys(ids) if i is not None]
    return summaries(session, found[:limit])


def by_phone(session: Session, phone: str) -> list[int]:
    """The people with this E.164 number: the one whose record holds it first, then any
    whose SMS or WhatsApp channel has it as its address (the console's search by number)."""
    ids: list[int | None] = list(session.scalars(
        select(Supporter.id).where(Supporter.phone == phone)))
    ids += session.scalars(select(Identity.supporter_id).where(
        Identity.address == phone, Identity.supporter_id.is_not(None))
        .order_by(Identity.supporter_id))
    return [i for i in dict.fromkeys(ids) if i is not None]


def summaries(session: Session, ids: list[int]) -> list[Found]:
    people = {s.id: Found(s.id, phone=mask(s.phone) if s.phone else "", since=s.created_at)
              for s in session.scalars(select(Supporter).where(Supporter.id.in_(ids)))}
    for sid, name, slug in session.execute(
            select(Signature.supporter_id, Signature.name, Petition.slug)
            .join(Petition, Petition.id == Signature.petition_id)
            .where(Signature.supporter_id.in_(ids))):
        people[sid].names.append(name)
        people[sid].signed.append(slug)
    for owner, channel in session.execute(select(Identity.supporter_id, Identity.channel)
                                          .where(Identity.supporter_id.in_(ids))):
        if owner is not None:
            people[owner].channels.append(channel)
    return [people[i] for i in ids if i in people]


def subject_access(session: Session, supporter_id: int) -> dict[str, Any] | None:
    """Everything held about one person, as JSON-ready data (None: no such person)."""
    supporter = session.get(Supporter, supporter_id)
    if supporter is None:
        return None
    identities = session.scalars(select(Identity).where(Identity.supporter_id == supporter_id)
                                 .order_by(Identity.id)).all()
    identity_ids = [i.id for i in identities]
    slugs = dict(session.execute(select(Petition.id, Petition.slug)).all())
    signatures = session.scalars(select(Signature).where(Signature.supporter_id == supporter_id)
                                 .order_by(Signature.id)).all()
    consents = session.scalars(select(ConsentRecord)
                               .where(ConsentRecord.supporter_id == supporter_id)
                               .order_by(ConsentRecord.created_at, ConsentRecord.id)).all()
    subscriptions = session.execute(
        select(Subscription, Identity.channel).join(Identity,
                                                    Identity.id == Subscription.identity_id)
        .where(Subscription.identity_id.in_(identity_ids)).order_by(Subscription.id)).all()
    conversations = session.execute(
        select(Conversation, Identity.channel).join(Identity,
                                                    Identity.id == Conversation.identity_id)
        .where(Conversation.identity_id.in_(identity_ids))).all()
    voices = session.scalars(select(Voice).where(Voice.supporter_id == supporter_id)
                             .order_by(Voice.id)).all()
    messages = session.scalars(select(InboundMessage)
                               .where(InboundMessage.identity_id.in_(identity_ids))
                               .order_by(InboundMessage.received_at)).all()
    # Announcements, and direct messages (staff replies from the inbox) with their own text.
    deliveries = session.execute(
        select(Delivery, func.coalesce(Delivery.text, Announcement.text)).outerjoin(
            Announcement, Announcement.id == Delivery.announcement_id)
        .where(Delivery.identity_id.in_(identity_ids)).order_by(Delivery.id)).all()
    return {
        "supporter": {"id": supporter.id, "phone": supporter.phone,
                      "created_at": _iso(supporter.created_at)},
        "identities": [{"channel": i.channel, "address": i.address,
                        "created_at": _iso(i.created_at),
                        "last_message_at": _iso(i.last_inbound_at),
                        "stopped_at": _iso(i.opted_out_at),
                        "unreachable_at": _iso(i.unreachable_at)} for i in identities],
        "signatures": [{"petition": slugs.get(s.petition_id), "number": s.number,
                        "name": s.name, "postcode": s.postcode, "country": s.country,
                        "nation": s.nation, "channel": s.channel, "referral": s.referral,
                        "signed_at": _iso(s.signed_at)} for s in signatures],
        "consent_history": [{"purpose": c.purpose, "action": c.action,
                             "petition": slugs.get(c.petition_id) if c.petition_id else None,
                             "wording_version": c.text_version, "channel": c.channel,
                             "evidence": c.evidence, "at": _iso(c.created_at)}
                            for c in consents],
        "subscriptions": [{"petition": slugs.get(s.petition_id), "channel": channel,
                           "since": _iso(s.created_at)} for s, channel in subscriptions],
        "conversations": [{"channel": channel, "step": c.step, "data": c.data,
                           "updated_at": _iso(c.updated_at)} for c, channel in conversations],
        "voices": [{"petition": slugs.get(v.petition_id), "text": v.text,
                    "publish_consent": v.publish_consent, "status": v.status,
                    "created_at": _iso(v.created_at)} for v in voices],
        "messages_received": [{"channel": m.channel, "text": m.body,
                               "answered": [r.get("text") for r in m.replies or []],
                               "at": _iso(m.received_at)} for m in messages],
        "messages_sent": [{"announcement": d.announcement_id, "channel": d.channel,
                           "status": d.status, "sent_at": _iso(d.sent_at), "text": text}
                          for d, text in deliveries],
        "inbox": inbox.subject_access(session, supporter_id),
    }


def masked(data: dict[str, Any]) -> str:
    """How staff screens and the audit log name the person `data` describes: the masked
    number, or the supporter id for someone with none (Telegram only)."""
    phone = data["supporter"]["phone"]
    return mask(phone) if phone else f"supporter {data['supporter']['id']}"


def view(session: Session, supporter_id: int, staff: str,
         at: dt.datetime) -> dict[str, Any] | None:
    """What we hold about one person, opened by a staff member (audited: who looked at whom
    is itself personal data's trail); None when there is no such person."""
    data = subject_access(session, supporter_id)
    if data is not None:
        audit(session, staff, "supporter.view", f"supporter:{supporter_id}", None, at)
    return data


def export(session: Session, supporter_id: int, organisation: Organisation, staff: str,
           at: dt.datetime) -> str | None:
    """The subject access export: everything held about one person as the JSON document
    handed to them, naming the controller (audited); None when there is no such person.
    The console's download and the API's answer are this same text."""
    data = subject_access(session, supporter_id)
    if data is None:
        return None
    audit(session, staff, "supporter.export", f"supporter:{supporter_id}",
          {"phone": masked(data)}, at)
    return json.dumps({"controller": organisation.name, "contact": organisation.contact,
                       "generated_at": at.isoformat(), **data}, ensure_ascii=False, indent=2)


@dataclass(frozen=True)
class Erased:
    supporter_id: int
    phone: str              # masked: fit for the audit log
    signatures: int
    suppressed: int         # identities kept, bare, because the person said STOP


def erase(session: Session, supporter_id: int, staff: str, at: dt.datetime) -> Erased | None:
    """Erase one person at a staff member's request (bot.shell.people.erase_supporter: the
    same as their own DELETE), audited with counts only; None when there is no such person.
    Their lock first: a message of theirs under way finishes, and its events go out first."""
    lock_supporter(session.connection(), supporter_id)
    supporter = session.get(Supporter, supporter_id)
    if supporter is None:
        return None
    phone = mask(supporter.phone) if supporter.phone else ""
    signatures = session.scalar(select(func.count()).select_from(Signature)
                                .where(Signature.supporter_id == supporter_id)) or 0
    suppressed = session.scalar(select(func.count()).select_from(Identity).where(
        Identity.supporter_id == supporter_id, Identity.opted_out_at.is_not(None))) or 0
    erase_supporter(session, supporter_id, at)
    audit(session, staff, "supporter.erase", f"supporter:{supporter_id}",
          {"phone": phone, "signatures": signatures, "suppression_kept": suppressed}, at)
    return Erased(supporter_id, phone, signatures, suppressed)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


__all__ = ["Erased", "Found", "by_phone", "erase", "export", "find", "masked",
           "subject_access", "summaries", "view"]
