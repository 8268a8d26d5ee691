"""Who a message is from: their identity, supporter and conversation, found or created, with
one person's messages handled one at a time; and the records that follow a person (linking
two of their identities, erasing them).

Every inbound message runs these statements, so they are built once, as Core statements
with bound parameters, and run on the transaction's connection: no ORM unit of work and no
statement construction per message.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    delete,
    insert,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from bot.core.conversation import Channel, SignatureView, State, Step, SupporterView
from bot.shell import throttle
from models import (
    ChannelCount,
    ConsentRecord,
    Conversation,
    Identity,
    InboundMessage,
    Petition,
    RateWindow,
    Signature,
    Subscription,
    Supporter,
    Voice,
)
from models.base import BigId
from models.db import is_postgres
from models.prepared import Prepared
from models.sql import insert_ignore, insert_ignore_statement

identities = cast(Table, Identity.__table__)
supporters = cast(Table, Supporter.__table__)
conversations = cast(Table, Conversation.__table__)
signatures = cast(Table, Signature.__table__)
subscriptions = cast(Table, Subscription.__table__)
petitions = cast(Table, Petition.__table__)
inbound_messages = cast(Table, InboundMessage.__table__)

_IDENTITY = (identities.c.channel == bindparam("channel"),
             identities.c.address == bindparam("address"))
# The sender and what the core needs to know about them, in one statement: one "who" row
# (identity, phone, conversation), then a row per signature of theirs (on any channel) and
# per subscription of this identity. Each column holds one type in every kind of row.
_FIND_PARTS = (
    select(literal("who").label("kind"), identities.c.id, identities.c.supporter_id,
           identities.c.opted_out_at, identities.c.unreachable_at, identities.c.last_inbound_at,
           supporters.c.phone, conversations.c.step, conversations.c.data,
           conversations.c.version, null(), null(), null(), supporters.c.reply_times,
           supporters.c.over_budget_at)
    .select_from(identities.outerjoin(conversations,
                                      conversations.c.identity_id == identities.c.id)
                 .outerjoin(supporters, supporters.c.id == identities.c.supporter_id))
    .where(*_IDENTITY),
    select(literal("signed"), signatures.c.number, null(), signatures.c.signed_at, null(),
           null(), signatures.c.name, petitions.c.slug, null(), null(), signatures.c.channel,
           signatures.c.postcode, signatures.c.country, null(), null())
    .join_from(signatures, petitions, petitions.c.id == signatures.c.petition_id)
    .where(signatures.c.supporter_id == select(identities.c.supporter_id)
           .where(*_IDENTITY).scalar_subquery()),
    select(literal("subscribed"), null(), null(), null(), null(), null(), null(),
           petitions.c.slug, null(), null(), null(), null(), null(), null(), null())
    .join_from(subscriptions, petitions, petitions.c.id == subscriptions.c.petition_id)
    .where(subscriptions.c.identity_id == select(identities.c.id)
           .where(*_IDENTITY).scalar_subquery()))
FIND = Prepared(union_all(*_FIND_PARTS))


def _find_and_record(dialect: str) -> Any:
    """PostgreSQL: FIND, and the message's inbound row inserted in the same statement (a
    data-modifying WITH), naming the sender only if the supporter locked is theirs. An
    "inbound" row gives the new row's id, or NULL for a replay."""
    recorded = (postgresql.insert(inbound_messages)
                .values(channel=bindparam("p_channel"), provider_id=bindparam("p_provider_id"),
                        identity_id=select(identities.c.id).where(
                            *_IDENTITY, identities.c.supporter_id == bindparam(
                                "p_locked", type_=BigId)).scalar_subquery(),
                        body=bindparam("p_body"), received_at=bindparam("p_received_at"))
                .on_conflict_do_nothing(index_elements=["channel", "provider_id"])
                .returning(inbound_messages.c.id).cte("recorded"))
    return union_all(*_FIND_PARTS, select(
        literal("inbound"), select(recorded.c.id).scalar_subquery(), *[null()] * 13))


FIND_AND_RECORD = Prepared(_find_and_record)
NEW_INBOUND = Prepared(lambda dialect: insert_ignore_statement(
    dialect, inbound_messages, ("channel", "provider_id", "identity_id", "body", "received_at"),
    ("channel", "provider_id"), inbound_messages.c.id))

LOCK_PERSON = Prepared(select(supporters.c.id)
               .where(supporters.c.id == select(identities.c.supporter_id)
                      .where(*_IDENTITY).scalar_subquery())
               .with_for_update())
LOCK_SUPPORTER = Prepared(select(supporters.c.id).where(supporters.c.id == bindparam("id"))
                          .with_for_update())
LOCK_IDENTITY = Prepared(select(identities.c.id).where(identities.c.id == bindparam("id"))
                         .with_for_update())
SUPPORTER_BY_PHONE = Prepared(select(supporters.c.id)
                              .where(supporters.c.phone == bindparam("phone")))
NEW_SUPPORTER = Prepared(insert(supporters).values(created_at=bindparam("p_now"))
                         .returning(supporters.c.id))
NEW_CONVERSATION = Prepared(insert(conversations).values(
    identity_id=bindparam("p_identity"), step=bindparam("p_step"), data=bindparam("p_data"),
    version=1, updated_at=bindparam("p_now")))
SAVE_CONVERSATION = Prepared(update(conversations)
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
    reply_times: list[float] | None = None  # the supporter's reply budget (bot.core.budget)
    over_budget_at: datetime | None = None
    read: dict[str, Any] = field(default_factory=dict)
    # FIND's signature and subscription rows, and the supporter they were read for.
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rows_for: int | None = None

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


def lock(conn: Connection, channel: Channel, address: str) -> int | None:
    """PostgreSQL: lock the person behind this address (if known) before reading anything,
    so that one person's messages, on any channel, are handled one after the other; their
    supporter id, or None. SQLite needs nothing: its write lock is already held."""
    if not is_postgres(conn):
        return None
    locked: int | None = LOCK_PERSON.scalar(conn, {"channel": channel.value,
                                                   "address": address})
    return locked


def find_and_record(conn: Connection, channel: Channel, address: str, locked: int | None,
                    body: str, provider_id: str,
                    now: datetime) -> tuple[Who | None, int | None, bool]:
    """The sender (as `find`), and the message's inbound row: its id, or None for a replay
    (whose first copy had the effect), and whether it already names the sender. It names
    them at once only if they are settled (on PostgreSQL: the supporter locked is theirs),
    as its foreign key share-locks the identity, which must not come before that lock."""
    params = {"channel": channel.value, "address": address, "p_channel": channel.value,
              "p_provider_id": provider_id, "p_body": body, "p_received_at": now}
    if is_postgres(conn):  # one round trip
        rows = FIND_AND_RECORD.all(conn, {**params, "p_locked": locked})
        inbound_id = next(row[1] for row in rows if row[0] == "inbound")
        who = _who(rows)
        return who, inbound_id, who is not None and holds(conn, who, locked)
    who = find(conn, channel, address)
    settled = who is not None and holds(conn, who, locked)
    inbound_id = NEW_INBOUND.scalar(conn, {
        **params, "p_identity_id": who.id if who is not None and settled else None})
    return who, inbound_id, settled


def holds(conn: Connection, who: Who, locked: int | None) -> bool:
    """Whether this transaction already serialises `who`'s messages: on SQLite always (the
    writer lock), on PostgreSQL when the supporter locked is theirs."""
    return not is_postgres(conn) or (locked is not None and locked == who.supporter_id)


def find(conn: Connection, channel: Channel, address: str) -> Who | None:
    return _who(FIND.all(conn, {"channel": channel.value, "address": address}))


def _who(rows: list[tuple[Any, ...]]) -> Who | None:
    found = next((row for row in rows if row[0] == "who"), None)
    if found is None:
        return None
    who = Who(*found[1:10])
    who.reply_times, who.over_budget_at = found[13], found[14]
    who.rows = [row for row in rows if row[0] in ("signed", "subscribed")]
    who.rows_for = who.supporter_id
    return who


def create(conn: Connection, channel: Channel, address: str, phone: str,
           now: datetime) -> Who:
    """A first message from this address: its identity, with the person's supporter."""
    # A phone number names the person on every channel, so their supporter comes first; a
    # Telegram chat gets its supporter once its identity row is locked (settle, below).
    supporter_id = supporter_for(conn, phone, now) if phone else None
    insert_ignore(conn, Identity, {"supporter_id": supporter_id, "channel": channel.value,
                                   "address": address, "created_at": now,
                                   "last_inbound_at": now},  # created by their message
                  ["channel", "address"])
    who = find(conn, channel, address)
    assert who is not None
    return who


def settle(conn: Connection, who: Who, locked: int | None, channel: Channel, address: str,
           phone: str, now: datetime) -> Who:
    """Make sure the person found is the one locked (PostgreSQL), and that they have a
    supporter row (unless they opted out, bare, after an erasure)."""
    postgres = is_postgres(conn)
    if who.supporter_id is None:
        if postgres:
            LOCK_IDENTITY.run(conn, {"id": who.id})
            who = find(conn, channel, address) or who
        if who.supporter_id is None and who.opted_out_at is None:
            who.supporter_id = supporter_for(conn, phone, now)
            write(conn, who)
    elif postgres and locked != who.supporter_id:
        # Created just now, or the person changed while we waited: lock, then re-read.
        if LOCK_SUPPORTER.scalar(conn, {"id": who.supporter_id}) is None:
            return find_or_create(conn, channel, address, phone, now)  # erased meanwhile
        who = find(conn, channel, address) or who
    return who


def find_or_create(conn: Connection, channel: Channel, address: str, phone: str,
                   now: datetime) -> Who:
    """The sender, locked as `lock` says, created if new."""
    locked = lock(conn, channel, address)
    who = find(conn, channel, address) or create(conn, channel, address, phone, now)
    return settle(conn, who, locked, channel, address, phone, now)


def supporter_for(conn: Connection, phone: str, now: datetime) -> int:
    """The supporter with this phone number (created if new), or a new phoneless one."""
    if phone:
        insert_ignore(conn, Supporter, {"phone": phone, "created_at": now}, ["phone"])
        supporter_id: int = SUPPORTER_BY_PHONE.scalar(conn, {"phone": phone})
        return supporter_id
    return int(NEW_SUPPORTER.scalar(conn, {"p_now": now}))


@functools.lru_cache(maxsize=16)
def _write_statement(names: tuple[str, ...]) -> Prepared:
    return Prepared(update(identities).where(identities.c.id == bindparam("p_id")).values(
        {name: bindparam(f"p_{name}") for name in names}))


def write(conn: Connection, who: Who) -> None:
    """Write the identity's changed fields, if any."""
    changed = {name: getattr(who, name) for name in WATCHED
               if getattr(who, name) != who.read[name]}
    if changed:
        _write_statement(tuple(changed)).run(
            conn, {"p_id": who.id, **{f"p_{k}": v for k, v in changed.items()}})
        who.read.update(changed)


SAVE_BUDGET = Prepared(update(supporters).where(supporters.c.id == bindparam("p_id"))
                       .values(reply_times=bindparam("p_times"),
                               over_budget_at=bindparam("p_noticed")))
REPLIES_OF = Prepared(select(inbound_messages.c.replies)
                      .where(inbound_messages.c.channel == bindparam("p_channel"),
                             inbound_messages.c.provider_id == bindparam("p_provider_id")))
FINISH_INBOUND = Prepared(update(inbound_messages)
                          .where(inbound_messages.c.id == bindparam("p_id"))
                          .values(identity_id=bindparam("p_identity"),
                                  replies=bindparam("p_replies")))


rate_windows = cast(Table, RateWindow.__table__)


def budget_keys(secret: bytes, channel: Channel, address: str, phone: str | None) -> list[str]:
    """Where the reply budget of a person erased mid-window is kept (keyed hashes of their
    address and phone number, which the rows never hold)."""
    people = [f"{channel.value}:{address}", *([f"phone:{phone}"] if phone else [])]
    return [throttle.key("replies", secret, person) for person in people]


def budget_left(conn: Connection, keys: list[str]) -> tuple[list[float], datetime | None]:
    """The budget an erasure left behind for this person (nothing if none)."""
    hits: list[float] = []
    noticed: datetime | None = None
    for row_hits, row_noticed in conn.execute(
            select(rate_windows.c.hits, rate_windows.c.noticed_at)
            .where(rate_windows.c.key.in_(keys))).all():
        hits.extend(row_hits or [])
        if row_noticed is not None and (noticed is None or row_noticed > noticed):
            noticed = row_noticed
    return sorted(hits), noticed


def leave_budget(conn: Connection, keys: list[str], hits: list[float],
                 noticed: datetime | None, now: datetime) -> None:
    """Keep an erased person's reply budget, so that erasing oneself never refills it."""
    conn.execute(delete(rate_windows).where(rate_windows.c.key.in_(keys)))
    conn.execute(insert(rate_windows), [{"key": k, "hits": hits, "noticed_at": noticed,
                                         "updated_at": now} for k in keys])


def save_budget(conn: Connection, who: Who, times: list[float],
                noticed: datetime | None) -> None:
    """The person's reply budget after this message (their supporter row is held)."""
    if who.supporter_id is not None and (times != who.reply_times
                                         or noticed != who.over_budget_at):
        SAVE_BUDGET.run(conn, {"p_id": who.supporter_id, "p_times": times,
                               "p_noticed": noticed})
        who.reply_times, who.over_budget_at = times, noticed


ERASED_INBOUND = Prepared(update(inbound_messages)
                          .where(inbound_messages.c.id == bindparam("p_id"))
                          .values(identity_id=None, body=None, replies=bindparam("p_replies")))


def finish_inbound(conn: Connection, inbound_id: int, identity_id: int | None,
                   replies: list[dict[str, Any]], erased: bool = False) -> None:
    """The inbound row names its sender and keeps the answer, for a provider's retry; the
    message that erased its sender keeps neither their words nor a link to them."""
    if erased:
        ERASED_INBOUND.run(conn, {"p_id": inbound_id, "p_replies": replies})
    else:
        FINISH_INBOUND.run(conn, {"p_id": inbound_id, "p_identity": identity_id,
                                  "p_replies": replies})


def replies_of(conn: Connection, channel: Channel, provider_id: str) -> list[dict[str, Any]]:
    """What the first copy of a message was answered ([] once purged or erased)."""
    stored = REPLIES_OF.scalar(conn, {"p_channel": channel.value, "p_provider_id": provider_id})
    return stored if isinstance(stored, list) else []


def facts(who: Who) -> SupporterView:
    """The person's signatures and this identity's subscriptions, as FIND read them (for
    the supporter `who.rows_for`: find them again if it has changed since)."""
    return SupporterView(
        opted_out=who.opted_out_at is not None,
        signatures=tuple(SignatureView(
            petition=row[7], number=row[1], signed_at=row[3], channel=Channel(row[10]),
            name=row[6], postcode=row[11] or "", country=row[12] or "")
            for row in who.rows if row[0] == "signed"),
        subscribed=frozenset(row[7] for row in who.rows if row[0] == "subscribed"))


def save_conversation(conn: Connection, who: Who, state: State, now: datetime) -> None:
    data: dict[str, Any] = {name: getattr(state, name) for name in STATE_FIELDS}
    data["options"] = list(state.options)
    params = {"p_identity": who.id, "p_step": state.step.value, "p_data": data, "p_now": now}
    if who.version is None:
        NEW_CONVERSATION.run(conn, params)
    elif (who.step != state.step.value or who.data != data) and SAVE_CONVERSATION.run(
            conn, {**params, "p_version": who.version}) != 1:
        raise ConcurrentUpdate(f"conversation {who.id} changed meanwhile")


def link_phone(conn: Connection, who: Who, phone: str, now: datetime) -> None:
    """The sender proved `phone` is theirs: this identity joins that person."""
    owner = SUPPORTER_BY_PHONE.scalar(conn, {"phone": phone})
    if owner is None:
        current_phone = conn.scalar(select(supporters.c.phone).where(
            supporters.c.id == who.supporter_id)) if who.supporter_id else None
        if who.supporter_id is not None and current_phone is None:
            conn.execute(update(supporters).where(supporters.c.id == who.supporter_id)
                         .values(phone=phone))
        else:
            who.supporter_id = supporter_for(conn, phone, now)
    elif who.supporter_id is None or owner == who.supporter_id:
        who.supporter_id = owner
    else:
        if is_postgres(conn):
            LOCK_SUPPORTER.run(conn, {"id": owner})
        merge_supporters(conn, source=who.supporter_id, target=owner)
        who.supporter_id = who.read["supporter_id"] = owner
    who.phone = phone
    write(conn, who)


def merge_supporters(conn: Connection, source: int, target: int) -> None:
    """Fold one person's records into another's; a petition both signed counts once."""
    target_petitions = set(conn.scalars(
        select(signatures.c.petition_id).where(signatures.c.supporter_id == target)))
    for signature_id, petition_id, channel in conn.execute(
            select(signatures.c.id, signatures.c.petition_id, signatures.c.channel)
            .where(signatures.c.supporter_id == source)).all():
        if petition_id in target_petitions:
            uncount(conn, petition_id, channel)
            conn.execute(delete(signatures).where(signatures.c.id == signature_id))
    for model in (Signature, ConsentRecord, Identity, Voice):
        conn.execute(update(model).where(model.supporter_id == source)
                     .values(supporter_id=target))
    conn.execute(delete(supporters).where(supporters.c.id == source))


def erase_supporter(session: Session | Connection, supporter_id: int | None) -> None:
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
                    .values(identity_id=None, body=None, replies=None))
    session.execute(delete(ConsentRecord).where(ConsentRecord.supporter_id == supporter_id))
    session.execute(update(Identity).where(Identity.supporter_id == supporter_id,
                                           Identity.opted_out_at.is_not(None))
                    .values(supporter_id=None, last_inbound_at=None, unreachable_at=None))
    session.execute(delete(Identity).where(Identity.supporter_id == supporter_id))
    session.execute(delete(Supporter).where(Supporter.id == supporter_id))
    if isinstance(session, Session):
        session.expunge_all()


def uncount(session: Session | Connection, petition_id: int, channel: str) -> None:
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
