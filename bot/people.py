"""Who a message is from: their identity, supporter and conversation, found or created, with
one person's messages handled one at a time; and the records that follow a person (linking
two of their identities, erasing them).

The per-message statements are built once, as Core statements with bound parameters, and
run on the session's connection: every inbound message goes through here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from bot.conversation import Channel, SignatureView, State, Step, SupporterView
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

identities = cast(Table, Identity.__table__)
supporters = cast(Table, Supporter.__table__)
conversations = cast(Table, Conversation.__table__)

FIND = (select(identities.c.id, identities.c.supporter_id, identities.c.opted_out_at,
               identities.c.unreachable_at, identities.c.last_inbound_at, supporters.c.phone,
               conversations.c.step, conversations.c.data, conversations.c.version)
        .select_from(identities.outerjoin(conversations,
                                          conversations.c.identity_id == identities.c.id)
                     .outerjoin(supporters, supporters.c.id == identities.c.supporter_id))
        .where(identities.c.channel == bindparam("channel"),
               identities.c.address == bindparam("address")))
LOCK_PERSON = (select(supporters.c.id)
               .where(supporters.c.id == select(identities.c.supporter_id)
                      .where(identities.c.channel == bindparam("channel"),
                             identities.c.address == bindparam("address")).scalar_subquery())
               .with_for_update())
LOCK_SUPPORTER = select(supporters.c.id).where(supporters.c.id == bindparam("id")).with_for_update()
LOCK_IDENTITY = select(identities.c.id).where(identities.c.id == bindparam("id")).with_for_update()
SIGNATURES = (select(Signature.number, Signature.signed_at, Signature.channel, Signature.name,
                     Signature.postcode, Signature.country, Petition.slug)
              .join(Petition, Petition.id == Signature.petition_id)
              .where(Signature.supporter_id == bindparam("supporter_id")))
SUBSCRIBED = (select(Petition.slug).join(Subscription, Subscription.petition_id == Petition.id)
              .where(Subscription.identity_id == bindparam("identity_id")))
NEW_CONVERSATION = insert(conversations).values(
    identity_id=bindparam("p_identity"), step=bindparam("p_step"), data=bindparam("p_data"),
    version=1, updated_at=bindparam("p_now"))
SAVE_CONVERSATION = (update(conversations)
                     .where(conversations.c.identity_id == bindparam("p_identity"),
                            conversations.c.version == bindparam("p_version"))
                     .values(step=bindparam("p_step"), data=bindparam("p_data"),
                             version=conversations.c.version + 1, updated_at=bindparam("p_now")))

STATE_FIELDS = tuple(f.name for f in dataclasses.fields(State) if f.name != "step")
WATCHED = ("supporter_id", "opted_out_at", "unreachable_at", "last_inbound_at")


class ConcurrentUpdate(Exception):
    """Someone else changed this conversation meanwhile: the transaction must be retried."""


@dataclass
class Who:
    """The sender, as read at the start of the transaction; changes are written at the end."""

    id: int
    supporter_id: int | None
    opted_out_at: datetime | None
    unreachable_at: datetime | None
    last_inbound_at: datetime | None
    phone: str | None
    step: str | None
    data: dict[str, Any] | None
    version: int | None
    read: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.read = {name: getattr(self, name) for name in WATCHED}

    @property
    def state(self) -> State:
        """The stored conversation as the core's State (every field, whatever its name)."""
        if self.step is None or self.data is None:
            return State()
        data = {**self.data, "step": self.step}
        try:
            return State(**{f.name: _field(f.name, data[f.name])
                            for f in dataclasses.fields(State) if f.name in data})
        except (TypeError, ValueError):  # written by an older version: start again
            return State()


def find(session: Session, channel: Channel, address: str) -> Who | None:
    row = session.connection().execute(FIND, {"channel": channel.value,
                                              "address": address}).first()
    return Who(*row) if row is not None else None


def find_or_create(session: Session, channel: Channel, address: str, phone: str,
                   now: datetime) -> Who:
    """The sender; on PostgreSQL their supporter row is locked before anything is read, so
    one person's messages (on any channel) are handled one after the other."""
    postgres = is_postgres(session)
    conn = session.connection()
    locked = None
    if postgres:
        locked = conn.execute(LOCK_PERSON, {"channel": channel.value,
                                            "address": address}).scalar()
    who = find(session, channel, address)
    if who is None:
        # A phone number names the person on every channel, so their supporter comes
        # first; a Telegram chat gets its supporter once its identity row is locked.
        supporter_id = supporter_for(session, phone, now) if phone else None
        insert_ignore(session, Identity, {"supporter_id": supporter_id, "channel": channel.value,
                                          "address": address, "created_at": now},
                      ["channel", "address"])
        who = find(session, channel, address)
        assert who is not None
    if who.supporter_id is None:
        if postgres:
            conn.execute(LOCK_IDENTITY, {"id": who.id})
            who = find(session, channel, address)
            assert who is not None
        if who.supporter_id is None and who.opted_out_at is None:
            who.supporter_id = supporter_for(session, phone, now)
            write(session, who)
    elif postgres and locked != who.supporter_id:
        # Created just now, or the person changed while we waited: lock, then re-read.
        if conn.execute(LOCK_SUPPORTER, {"id": who.supporter_id}).scalar() is None:
            return find_or_create(session, channel, address, phone, now)  # erased meanwhile
        who = find(session, channel, address)
        assert who is not None
    return who


def supporter_for(session: Session, phone: str, now: datetime) -> int:
    """The supporter with this phone number (created if new), or a new phoneless one."""
    if phone:
        insert_ignore(session, Supporter, {"phone": phone, "created_at": now}, ["phone"])
        supporter_id = session.scalar(select(Supporter.id).where(Supporter.phone == phone))
        assert supporter_id is not None
        return supporter_id
    return int(session.connection().execute(
        insert(supporters).values(created_at=now).returning(supporters.c.id)).scalar_one())


def write(session: Session, who: Who) -> None:
    """Write the identity's changed fields, if any."""
    changed = {name: getattr(who, name) for name in WATCHED
               if getattr(who, name) != who.read[name]}
    if changed:
        session.connection().execute(update(identities).where(identities.c.id == who.id)
                                     .values(**changed))
        who.read.update(changed)


def facts(session: Session, who: Who) -> SupporterView:
    conn = session.connection()
    signatures = conn.execute(SIGNATURES, {"supporter_id": who.supporter_id}).all() if (
        who.supporter_id is not None) else []
    subscribed = conn.execute(SUBSCRIBED, {"identity_id": who.id}).scalars().all()
    return SupporterView(
        opted_out=who.opted_out_at is not None,
        signatures=tuple(SignatureView(
            petition=s.slug, number=s.number, signed_at=s.signed_at, channel=Channel(s.channel),
            name=s.name, postcode=s.postcode or "", country=s.country or "")
            for s in signatures),
        subscribed=frozenset(subscribed))


def save_conversation(session: Session, who: Who, state: State, now: datetime) -> None:
    data: dict[str, Any] = {name: getattr(state, name) for name in STATE_FIELDS}
    data["options"] = list(state.options)
    conn = session.connection()
    params = {"p_identity": who.id, "p_step": state.step.value, "p_data": data, "p_now": now}
    if who.version is None:
        conn.execute(NEW_CONVERSATION, params)
    elif who.step != state.step.value or who.data != data:
        result = conn.execute(SAVE_CONVERSATION, {**params, "p_version": who.version})
        if result.rowcount != 1:
            raise ConcurrentUpdate(f"conversation {who.id} changed meanwhile")


def link_phone(session: Session, who: Who, phone: str, now: datetime) -> None:
    """The sender proved `phone` is theirs: this identity joins that person."""
    owner = session.scalar(select(Supporter.id).where(Supporter.phone == phone))
    if owner is None:
        current_phone = session.scalar(select(Supporter.phone).where(
            Supporter.id == who.supporter_id)) if who.supporter_id else None
        if who.supporter_id is not None and current_phone is None:
            session.execute(update(Supporter).where(Supporter.id == who.supporter_id)
                            .values(phone=phone))
        else:
            who.supporter_id = supporter_for(session, phone, now)
    elif who.supporter_id is None or owner == who.supporter_id:
        who.supporter_id = owner
    else:
        if is_postgres(session):
            session.connection().execute(LOCK_SUPPORTER, {"id": owner})
        merge_supporters(session, source=who.supporter_id, target=owner)
        who.supporter_id = who.read["supporter_id"] = owner
    who.phone = phone
    write(session, who)


def merge_supporters(session: Session, source: int, target: int) -> None:
    """Fold one person's records into another's; a petition both signed counts once."""
    target_petitions = set(session.scalars(
        select(Signature.petition_id).where(Signature.supporter_id == target)))
    for sig in session.scalars(select(Signature).where(Signature.supporter_id == source)).all():
        if sig.petition_id in target_petitions:
            uncount(session, sig.petition_id, sig.channel)
            session.delete(sig)
        else:
            sig.supporter_id = target
    session.flush()
    for model in (ConsentRecord, Identity, Voice):
        session.execute(update(model).where(model.supporter_id == source)
                        .values(supporter_id=target))
    session.execute(delete(Supporter).where(Supporter.id == source))


def erase_supporter(session: Session, supporter_id: int | None) -> None:
    """Really delete a person: signatures (counts follow), consent, voices, subscriptions,
    conversations and identities; an identity that said STOP stays, bare, as suppression."""
    if supporter_id is None:
        return
    for petition_id, channel in session.execute(
            select(Signature.petition_id, Signature.channel)
            .where(Signature.supporter_id == supporter_id)).all():
        uncount(session, petition_id, channel)
    identity_ids = list(session.scalars(
        select(Identity.id).where(Identity.supporter_id == supporter_id)))
    session.execute(delete(Signature).where(Signature.supporter_id == supporter_id))
    session.execute(delete(Voice).where(Voice.supporter_id == supporter_id))
    session.execute(delete(Subscription).where(Subscription.identity_id.in_(identity_ids)))
    session.execute(delete(Conversation).where(Conversation.identity_id.in_(identity_ids)))
    session.execute(update(InboundMessage).where(InboundMessage.identity_id.in_(identity_ids))
                    .values(identity_id=None, body=None))
    session.execute(delete(ConsentRecord).where(ConsentRecord.supporter_id == supporter_id))
    session.execute(update(Identity).where(Identity.supporter_id == supporter_id,
                                           Identity.opted_out_at.is_not(None))
                    .values(supporter_id=None, last_inbound_at=None, unreachable_at=None))
    session.execute(delete(Identity).where(Identity.supporter_id == supporter_id))
    session.execute(delete(Supporter).where(Supporter.id == supporter_id))
    session.expunge_all()


def uncount(session: Session, petition_id: int, channel: str) -> None:
    session.execute(update(Petition).where(Petition.id == petition_id)
                    .values(signature_count=Petition.signature_count - 1))
    session.execute(update(ChannelCount).where(ChannelCount.petition_id == petition_id,
                                               ChannelCount.channel == channel)
                    .values(count=ChannelCount.count - 1))


def _field(name: str, value: Any) -> Any:
    if name in ("step", "resume"):
        return Step(value)
    if name == "options":
        return tuple(str(o) for o in value)
    if name == "page":
        return int(value)
    return str(value)
