"""Who a message is from: their identity and person, read once per message (FIND), or
enrolled if new; what is written back about them; and the records that follow a person
(linking two of their identities, erasing them, ending their subscriptions, their reply
budget), with the events those make for other systems (bot/shell/events.py).

One person's messages are handled one at a time: on PostgreSQL their supporter row is
locked before anything about them is read; on SQLite the write lock already serialises
every writer. Whatever changed about the person meanwhile (created, linked or erased by a
message on another channel) makes the message run again from the start (ConcurrentUpdate).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Update,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from bot.core.conversation import (
    Channel,
    SignatureView,
    State,
    Step,
    SupporterView,
    VoiceView,
)
from bot.core.render import Message
from bot.shell import events, throttle
from bot.shell.unit_of_work import UnitOfWork
from models import (
    ChannelCount,
    ConsentRecord,
    Conversation,
    Identity,
    InboundMessage,
    InboxConversation,
    InboxMessage,
    Petition,
    Signature,
    Subscription,
    Supporter,
    Voice,
)
from models.sql import insert_ignore, insert_ignore_statement
from models.tables import (
    conversations,
    event_deliveries,
    event_receivers,
    events_table,
    identities,
    inbound_messages,
    inbox_conversations,
    inbox_messages,
    petitions,
    rate_windows,
    signatures,
    subscriptions,
    supporters,
    voices,
)


class ConcurrentUpdate(Exception):
    """Someone else changed this person meanwhile: the transaction must be retried."""


class Replay(NamedTuple):
    """A message already handled (a provider's retry): what it was answered."""

    replies: tuple[Message, ...]


@dataclass(frozen=True)
class Stored:
    """A conversation as stored: its step, the rest of its State, and its version."""

    step: str
    data: Mapping[str, Any]
    version: int


# The identity's fields a message may change; written back at its end if it did.
WATCHED = ("supporter_id", "opted_out_at", "unreachable_at", "last_inbound_at")


@dataclass
class Sender:
    """Who a message is from, as read at the start of its transaction; changes to the
    WATCHED fields are written at its end (`save`)."""

    identity_id: int
    supporter_id: int | None
    opted_out_at: datetime | None
    unreachable_at: datetime | None
    last_inbound_at: datetime | None
    phone: str | None = None  # their person's
    conversation: Stored | None = None
    reply_times: list[float] | None = None  # their person's reply budget (bot.core.budget)
    over_budget_at: datetime | None = None
    signatures: tuple[SignatureView, ...] = ()  # their person's, on any channel
    voices: tuple[VoiceView, ...] = ()  # the "why I signed" their person left
    inbox_told: bool = False  # told, in their person's open inbox conversation, who reads it
    inbox_kept: int = 0  # their person's messages the staff inbox holds
    subscribed: frozenset[str] = frozenset()  # petitions with updates on this identity
    written: dict[str, Any] = field(default_factory=dict, repr=False)  # WATCHED, as stored

    def __post_init__(self) -> None:
        self.written = {name: getattr(self, name) for name in WATCHED}

    @property
    def state(self) -> State:
        """Where their conversation is."""
        if self.conversation is None:
            return State()
        return stored_state(self.conversation.step, self.conversation.data)

    @property
    def facts(self) -> SupporterView:
        return SupporterView(opted_out=self.opted_out_at is not None,
                             signatures=self.signatures, subscribed=self.subscribed,
                             voices=self.voices)


# Loading ---------------------------------------------------------------------------------

_ADDRESS = (identities.c.channel == bindparam("channel"),
            identities.c.address == bindparam("address"))
_IDENTITY = select(identities.c.id).where(*_ADDRESS).scalar_subquery()
# The person a message is from: its identity's supporter; or, from an address not seen
# before, whoever has the sender's phone number (their SMS and WhatsApp are one person).
_PERSON = func.coalesce(
    select(identities.c.supporter_id).where(*_ADDRESS).scalar_subquery(),
    select(supporters.c.id).where(supporters.c.phone == bindparam("phone"),
                                  ~exists().where(*_ADDRESS)).scalar_subquery())
LOCK_PERSON = select(supporters.c.id).where(supporters.c.id == _PERSON).with_for_update()

# FIND's columns: each holds one fact (and type) in every kind of row that has it.
_COLUMNS: dict[str, ColumnElement[Any]] = {
    "identity_id": identities.c.id, "opted_out_at": identities.c.opted_out_at,
    "unreachable_at": identities.c.unreachable_at,
    "last_inbound_at": identities.c.last_inbound_at,
    "step": conversations.c.step, "data": conversations.c.data,
    "version": conversations.c.version,
    "supporter_id": supporters.c.id, "phone": supporters.c.phone,
    "reply_times": supporters.c.reply_times, "over_budget_at": supporters.c.over_budget_at,
    "petition": petitions.c.slug, "number": signatures.c.number,
    "signed_at": signatures.c.signed_at, "channel": signatures.c.channel,
    "name": signatures.c.name, "postcode": signatures.c.postcode,
    "country": signatures.c.country,
    "replies": inbound_messages.c.replies,
    "text": voices.c.text, "status": voices.c.status, "publish": voices.c.publish_consent,
    "told": inbox_conversations.c.told, "kept": func.count(),
}


def _rows(kind: str, facts: Mapping[str, ColumnElement[Any]],
          typed: bool = False) -> Select[Any]:
    """One kind of FIND's rows: its facts, and NULL for the others. The first kind's NULLs
    are `typed`: a UNION's columns take their types from its first SELECT."""
    return select(literal_column(f"'{kind}'").label("kind"), *[
        (facts[name] if name in facts else cast(null(), column.type) if typed else null())
        .label(name) for name, column in _COLUMNS.items()])


_PERSON_FACTS: dict[str, ColumnElement[Any]] = {
    "supporter_id": supporters.c.id, "phone": supporters.c.phone,
    "reply_times": supporters.c.reply_times, "over_budget_at": supporters.c.over_budget_at}
# Everything a message needs to know about its sender, in one statement: their identity,
# conversation and person (or, from a new address, the person with their phone number),
# the person's signatures, voices and what the staff inbox holds of them, the identity's
# subscriptions, and whether this message was answered already.
FIND = union_all(
    _rows("sender", {
        "identity_id": identities.c.id, "opted_out_at": identities.c.opted_out_at,
        "unreachable_at": identities.c.unreachable_at,
        "last_inbound_at": identities.c.last_inbound_at, "step": conversations.c.step,
        "data": conversations.c.data, "version": conversations.c.version, **_PERSON_FACTS},
        typed=True)
    .select_from(identities
                 .outerjoin(conversations, conversations.c.identity_id == identities.c.id)
                 .outerjoin(supporters, supporters.c.id == identities.c.supporter_id))
    .where(*_ADDRESS),
    _rows("owner", _PERSON_FACTS)
    .where(supporters.c.phone == bindparam("phone"), ~exists().where(*_ADDRESS)),
    _rows("signed", {
        "petition": petitions.c.slug, "number": signatures.c.number,
        "signed_at": signatures.c.signed_at, "channel": signatures.c.channel,
        "name": signatures.c.name, "postcode": signatures.c.postcode,
        "country": signatures.c.country})
    .select_from(signatures.join(petitions, petitions.c.id == signatures.c.petition_id))
    .where(signatures.c.supporter_id == _PERSON),
    _rows("voice", {"petition": petitions.c.slug, "text": voices.c.text,
                    "status": voices.c.status, "publish": voices.c.publish_consent})
    .select_from(voices.join(petitions, petitions.c.id == voices.c.petition_id))
    .where(voices.c.supporter_id == _PERSON),
    _rows("inbox", {  # (one row, whoever it is)
        "told": select(inbox_conversations.c.told)
        .where(inbox_conversations.c.open_supporter_id == _PERSON).scalar_subquery(),
        "kept": select(func.count()).select_from(inbox_messages.join(
            inbox_conversations,
            inbox_conversations.c.id == inbox_messages.c.conversation_id))
        .where(inbox_conversations.c.supporter_id == _PERSON,
               inbox_messages.c.kind == "in").scalar_subquery()}),
    _rows("subscribed", {"petition": petitions.c.slug})
    .select_from(subscriptions.join(petitions, petitions.c.id == subscriptions.c.petition_id))
    .where(subscriptions.c.identity_id == _IDENTITY),
    _rows("replay", {"replies": inbound_messages.c.replies})
    .where(inbound_messages.c.channel == bindparam("channel"),
           inbound_messages.c.provider_id == bindparam("provider_id")))


@dataclass(frozen=True)
class Found:
    """What FIND read: the sender's row (None: a new address), the row with their person's
    facts (the sender's own, or from a new address the owner of their phone number; None:
    a new person), and for a message already handled, its replay."""

    sender: Row[Any] | None = None
    person: Row[Any] | None = None
    signatures: tuple[SignatureView, ...] = ()
    subscribed: frozenset[str] = frozenset()
    replay: Replay | None = None
    voices: tuple[VoiceView, ...] = ()
    inbox_told: bool = False
    inbox_kept: int = 0

    @property
    def supporter_id(self) -> int | None:
        return None if self.person is None else self.person.supporter_id


_CHANNELS = {channel.value: channel for channel in Channel}


def find(work: UnitOfWork, channel: Channel, address: str, phone: str = "",
         provider_id: str = "") -> Found:
    """FIND: the sender at `address` (or who has `phone`), and the replay of `provider_id`."""
    sender = person = replay = None
    signed: list[SignatureView] = []
    voiced: list[VoiceView] = []
    told, kept = False, 0
    subscribed: set[str] = set()
    for row in work.rows(FIND, {"channel": channel.value, "address": address,
                                "phone": phone, "provider_id": provider_id}):
        match row.kind:
            case "sender":
                sender = person = row
            case "owner":
                person = row
            case "signed":
                signed.append(SignatureView(
                    petition=row.petition, number=row.number, signed_at=row.signed_at,
                    channel=_CHANNELS[row.channel], name=row.name, postcode=row.postcode or "",
                    country=row.country or ""))
            case "voice":
                voiced.append(VoiceView(petition=row.petition, text=row.text,
                                        status=row.status, publish=bool(row.publish)))
            case "inbox":
                told, kept = bool(row.told), int(row.kept or 0)
            case "subscribed":
                subscribed.add(row.petition)
            case "replay":
                replay = Replay(tuple(Message(r["text"], tuple(r["options"]))
                                      for r in row.replies or ()))
    return Found(sender, person, tuple(signed), frozenset(subscribed), replay, tuple(voiced),
                 told, kept)


def load(work: UnitOfWork, channel: Channel, address: str, phone: str, provider_id: str,
         own_contact: bool, now: datetime) -> Sender | Replay:
    """The sender of a message, their person locked first where rows are locked, enrolled
    if they are new; or, for a message already handled, its replay (which touches
    nothing: enrolling its sender could bring back a person its first copy erased)."""
    keys = {"channel": channel.value, "address": address, "phone": phone}
    locked = work.scalar(LOCK_PERSON, keys) if work.lock_rows else None
    found = find(work, channel, address, phone, provider_id)
    if found.replay is not None:
        return found.replay
    if work.lock_rows and found.supporter_id != locked:
        raise ConcurrentUpdate("the sender's person changed while their lock was awaited")
    if found.sender is None:
        sender = _enrol(work, channel, address, phone, found, now)
    else:
        sender = from_found(found)
    if sender.supporter_id is None and sender.opted_out_at is None:
        adopt(work, sender, phone, now)  # (an identity kept after an erasure stays bare)
    if own_contact and phone and link_phone(work, sender, phone, now):
        # They joined the person with that number: read them as that person.
        return from_found(find(work, channel, address))
    return sender


def from_found(found: Found) -> Sender:
    """The sender FIND found (at a known address)."""
    identity, person = found.sender, found.person
    assert identity is not None
    return Sender(
        identity_id=identity.identity_id, supporter_id=found.supporter_id,
        opted_out_at=identity.opted_out_at, unreachable_at=identity.unreachable_at,
        last_inbound_at=identity.last_inbound_at,
        phone=person.phone if person else None,
        conversation=None if identity.version is None else Stored(
            identity.step, identity.data, identity.version),
        reply_times=person.reply_times if person else None,
        over_budget_at=person.over_budget_at if person else None,
        signatures=found.signatures, voices=found.voices, subscribed=found.subscribed,
        inbox_told=found.inbox_told, inbox_kept=found.inbox_kept)


def _enrol(work: UnitOfWork, channel: Channel, address: str, phone: str, found: Found,
           now: datetime) -> Sender:
    """A first message from this address: its identity, for the person with this phone
    number, or for a new person."""
    supporter_id = found.supporter_id
    if supporter_id is None:
        supporter_id = _new_supporter(work, phone, now)
    identity_id = work.scalar(_new_identity(work), {
        "p_supporter_id": supporter_id, "p_channel": channel.value, "p_address": address,
        "p_created_at": now, "p_last_inbound_at": now})  # created by their message
    if identity_id is None:
        raise ConcurrentUpdate("this address was enrolled meanwhile")
    person = found.person
    return Sender(identity_id=identity_id, supporter_id=supporter_id, opted_out_at=None,
                  unreachable_at=None, last_inbound_at=now,
                  phone=person.phone if person else (phone or None),
                  reply_times=person.reply_times if person else None,
                  over_budget_at=person.over_budget_at if person else None,
                  signatures=found.signatures, voices=found.voices,
                  inbox_told=found.inbox_told, inbox_kept=found.inbox_kept)


NEW_PHONELESS_SUPPORTER = (insert(supporters).values(created_at=bindparam("p_created_at"))
                           .returning(supporters.c.id))


def _new_supporter(work: UnitOfWork, phone: str, now: datetime) -> int:
    """A new person; with `phone`, unless someone enrolled them meanwhile."""
    if not phone:
        return int(work.scalar(NEW_PHONELESS_SUPPORTER, {"p_created_at": now}))
    statement = insert_ignore_statement(work.conn.dialect.name, supporters,
                                        ("phone", "created_at"), ("phone",), supporters.c.id)
    supporter_id = work.scalar(statement, {"p_phone": phone, "p_created_at": now})
    if supporter_id is None:
        raise ConcurrentUpdate("someone with this phone number was enrolled meanwhile")
    return int(supporter_id)


def _new_identity(work: UnitOfWork) -> Any:
    return insert_ignore_statement(
        work.conn.dialect.name, identities,
        ("supporter_id", "channel", "address", "created_at", "last_inbound_at"),
        ("channel", "address"), identities.c.id)


def adopt(work: UnitOfWork, sender: Sender, phone: str, now: datetime) -> None:
    """Give an identity without a person one: whoever has `phone`, or someone new."""
    supporter_id = supporter_for(work.conn, phone, now)
    if work.run(ADOPT, {"p_id": sender.identity_id, "p_supporter": supporter_id}) != 1:
        raise ConcurrentUpdate(f"identity {sender.identity_id} was given a person meanwhile")
    sender.supporter_id = sender.written["supporter_id"] = supporter_id


ADOPT = (update(identities).where(identities.c.id == bindparam("p_id"),
                                  identities.c.supporter_id.is_(None))
         .values(supporter_id=bindparam("p_supporter")))
SUPPORTER_BY_PHONE = select(supporters.c.id).where(supporters.c.phone == bindparam("phone"))
LOCK_SUPPORTER = (select(supporters.c.id).where(supporters.c.id == bindparam("id"))
                  .with_for_update())


def lock_supporter(conn: Connection, supporter_id: int) -> None:
    """Hold this person's row to the end of the transaction, as a message from them does
    (PostgreSQL; SQLite's one writer needs no row lock): whatever else writes about them
    and records their events takes it first, so their events commit in the order of their
    ids, and an erasure waits for a signing under way rather than failing it."""
    if conn.dialect.name == "postgresql":
        conn.execute(LOCK_SUPPORTER, {"id": supporter_id})


def supporter_for(conn: Connection, phone: str, now: datetime) -> int:
    """The supporter with this phone number (created if new), or a new phoneless one."""
    if phone:
        insert_ignore(conn, Supporter, {"phone": phone, "created_at": now}, ["phone"])
        supporter_id = conn.scalar(SUPPORTER_BY_PHONE, {"phone": phone})
        assert supporter_id is not None  # inserted or already there
        return int(supporter_id)
    return int(conn.scalar(NEW_PHONELESS_SUPPORTER, {"p_created_at": now}))


# Writing back ----------------------------------------------------------------------------

STATE_FIELDS = tuple(f.name for f in dataclasses.fields(State) if f.name != "step")
_STEPS = {step.value: step for step in Step}
# How each stored field reads back (a string, unless named here).
_READ: dict[str, Callable[[Any], Any]] = {
    "resume": _STEPS.__getitem__, "page": int,
    "options": lambda value: tuple(str(o) for o in value)}


def stored_state(step: str, data: Mapping[str, Any]) -> State:
    """A stored conversation as the core's State (State() if an older version wrote what
    this one cannot read: they start again)."""
    try:
        return State(step=_STEPS[step], **{name: _READ.get(name, str)(data[name])
                                           for name in STATE_FIELDS if name in data})
    except (KeyError, TypeError, ValueError):
        return State()


NEW_CONVERSATION = insert(conversations).values(
    identity_id=bindparam("p_identity"), step=bindparam("p_step"), data=bindparam("p_data"),
    version=1, updated_at=bindparam("p_now"))
SAVE_CONVERSATION = (update(conversations)
                     .where(conversations.c.identity_id == bindparam("p_identity"),
                            conversations.c.version == bindparam("p_version"))
                     .values(step=bindparam("p_step"), data=bindparam("p_data"),
                             version=conversations.c.version + 1,
                             updated_at=bindparam("p_now")))


def save(work: UnitOfWork, sender: Sender, state: State | None, now: datetime) -> None:
    """Write what changed: the identity's WATCHED fields and, given one, the state."""
    changed = {name: getattr(sender, name) for name in WATCHED
               if getattr(sender, name) != sender.written[name]}
    if changed:
        work.run(_identity_update(tuple(changed)), {
            "p_id": sender.identity_id, **{f"p_{k}": v for k, v in changed.items()}})
        sender.written.update(changed)
    if state is not None:
        _save_conversation(work, sender, state, now)


@functools.lru_cache(maxsize=16)
def _identity_update(names: tuple[str, ...]) -> Update:
    return update(identities).where(identities.c.id == bindparam("p_id")).values(
        {name: bindparam(f"p_{name}") for name in names})


def _save_conversation(work: UnitOfWork, sender: Sender, state: State, now: datetime) -> None:
    data: dict[str, Any] = {name: getattr(state, name) for name in STATE_FIELDS}
    data["options"] = list(state.options)
    params = {"p_identity": sender.identity_id, "p_step": state.step.value, "p_data": data,
              "p_now": now}
    stored = sender.conversation
    if stored is None:
        work.run(NEW_CONVERSATION, params)
    elif (stored.step != state.step.value or stored.data != data) and work.run(
            SAVE_CONVERSATION, {**params, "p_version": stored.version}) != 1:
        raise ConcurrentUpdate(f"conversation {sender.identity_id} changed meanwhile")


NEW_INBOUND = insert(inbound_messages).values(
    channel=bindparam("p_channel"), provider_id=bindparam("p_provider_id"),
    identity_id=bindparam("p_identity", type_=identities.c.id.type),
    body=bindparam("p_body"), received_at=bindparam("p_received_at"),
    replies=bindparam("p_replies", type_=inbound_messages.c.replies.type))


def record(work: UnitOfWork, channel: Channel, provider_id: str, identity_id: int | None,
           body: str | None, replies: Sequence[Message], now: datetime) -> None:
    """The message's inbound row: at most one per provider id (a copy that raced this one
    fails here and runs again, as a replay). It keeps the answer, for a provider's retry;
    the message that erased its sender keeps neither their words nor a link to them."""
    work.run(NEW_INBOUND, {
        "p_channel": channel.value, "p_provider_id": provider_id, "p_identity": identity_id,
        "p_body": body, "p_received_at": now,
        "p_replies": [{"text": m.text, "options": list(m.options)} for m in replies]})


# The reply budget --------------------------------------------------------------------------

SAVE_BUDGET = (update(supporters).where(supporters.c.id == bindparam("p_id"))
               .values(reply_times=bindparam("p_times"), over_budget_at=bindparam("p_noticed")))


def budget_keys(secret: bytes, channel: Channel, address: str, phone: str | None) -> list[str]:
    """Where the reply budget of a person erased mid-window is kept (keyed hashes of their
    address and phone number, which the rows never hold)."""
    people = [f"{channel.value}:{address}", *([f"phone:{phone}"] if phone else [])]
    return [throttle.key("replies", secret, person) for person in people]


BUDGET_LEFT = (select(rate_windows.c.hits, rate_windows.c.noticed_at)
               .where(rate_windows.c.key.in_(bindparam("keys", expanding=True))))


def budget_left(conn: Connection, keys: list[str]) -> tuple[list[float], datetime | None]:
    """The budget an erasure left behind for this person (nothing if none)."""
    hits: list[float] = []
    noticed: datetime | None = None
    for row in conn.execute(BUDGET_LEFT, {"keys": keys}):
        hits.extend(row.hits or [])
        if row.noticed_at is not None and (noticed is None or row.noticed_at > noticed):
            noticed = row.noticed_at
    return sorted(hits), noticed


def leave_budget(conn: Connection, keys: list[str], hits: list[float],
                 noticed: datetime | None, now: datetime) -> None:
    """Keep an erased person's reply budget, so that erasing oneself never refills it."""
    conn.execute(delete(rate_windows).where(rate_windows.c.key.in_(keys)))
    conn.execute(insert(rate_windows), [{"key": k, "hits": hits, "noticed_at": noticed,
                                         "updated_at": now} for k in keys])


def save_budget(work: UnitOfWork, sender: Sender, times: list[float],
                noticed: datetime | None) -> None:
    """The person's reply budget after this message (their supporter row is held)."""
    if sender.supporter_id is not None and (times != sender.reply_times
                                            or noticed != sender.over_budget_at):
        work.run(SAVE_BUDGET, {"p_id": sender.supporter_id, "p_times": times,
                               "p_noticed": noticed})
        sender.reply_times, sender.over_budget_at = times, noticed


# Records that follow a person --------------------------------------------------------------

def link_phone(work: UnitOfWork, sender: Sender, phone: str, now: datetime) -> bool:
    """The sender proved `phone` is theirs: this identity joins that person. Whether they
    are someone else now (their signatures and budget are that person's)."""
    conn = work.conn
    owner = conn.scalar(SUPPORTER_BY_PHONE, {"phone": phone})
    before = sender.supporter_id
    if owner is None:
        if sender.supporter_id is not None and sender.phone is None:
            conn.execute(update(supporters).where(supporters.c.id == sender.supporter_id)
                         .values(phone=phone))
        else:
            sender.supporter_id = supporter_for(conn, phone, now)
    elif sender.supporter_id is None or owner == sender.supporter_id:
        sender.supporter_id = owner
    else:
        if work.lock_rows:
            conn.execute(LOCK_SUPPORTER, {"id": owner})
        # (This moves the identity too.)
        merge_supporters(conn, source=sender.supporter_id, target=owner, now=now)
        sender.supporter_id = sender.written["supporter_id"] = owner
    sender.phone = phone
    save(work, sender, None, now)
    return sender.supporter_id != before


def merge_supporters(conn: Connection, source: int, target: int, now: datetime) -> None:
    """Fold one person's records into another's; a petition both signed counts once (the
    source's signature of it is withdrawn, reason "merged"). Their events follow them, so
    that erasing the person reaches them and other systems hear of them in one order."""
    target_petitions = set(conn.scalars(
        select(signatures.c.petition_id).where(signatures.c.supporter_id == target)))
    for signature_id, petition_id, channel, number, slug in conn.execute(
            select(signatures.c.id, signatures.c.petition_id, signatures.c.channel,
                   signatures.c.number, petitions.c.slug)
            .join(petitions, petitions.c.id == signatures.c.petition_id)
            .where(signatures.c.supporter_id == source)).all():
        if petition_id in target_petitions:
            uncount(conn, petition_id, channel)
            conn.execute(delete(signatures).where(signatures.c.id == signature_id))
            events.record(conn, events.SIGNATURE_WITHDRAWN, events.withdrawn_data(
                slug, signature_id, number, source, "merged"), source, now)
    for model in (Signature, ConsentRecord, Identity, Voice):
        conn.execute(update(model).where(model.supporter_id == source)
                     .values(supporter_id=target))
    conn.execute(update(events_table).where(events_table.c.supporter_id == source)
                 .values(supporter_id=target))
    conn.execute(update(event_deliveries).where(deliveries_of(source))
                 .values(supporter_id=target))
    _merge_inbox(conn, source, target)
    conn.execute(delete(supporters).where(supporters.c.id == source))


def _merge_inbox(conn: Connection, source: int, target: int) -> None:
    """Their inbox conversations go with them (a flagged one above all); if both people had
    an open one, the source's messages join the target's, which stays the one open."""
    C = InboxConversation
    facts = (C.id, C.flagged, C.waiting_since, C.last_message_at)
    mine = conn.execute(select(*facts).where(C.open_supporter_id == source)).one_or_none()
    theirs = conn.execute(select(*facts).where(C.open_supporter_id == target)).one_or_none()
    if mine is not None and theirs is not None:
        conn.execute(update(InboxMessage).where(InboxMessage.conversation_id == mine.id)
                     .values(conversation_id=theirs.id))
        waiting = [w for w in (mine.waiting_since, theirs.waiting_since) if w is not None]
        conn.execute(update(C).where(C.id == theirs.id).values(
            flagged=mine.flagged or theirs.flagged,
            waiting_since=min(waiting) if waiting else None,
            last_message_at=max(mine.last_message_at, theirs.last_message_at)))
        conn.execute(delete(C).where(C.id == mine.id))
    conn.execute(update(C).where(C.supporter_id == source).values(supporter_id=target))
    conn.execute(update(C).where(C.open_supporter_id == source)
                 .values(open_supporter_id=target))


def deliveries_of(supporter_id: int) -> ColumnElement[bool]:
    """This person's event deliveries, found along ix_event_deliveries_order (receiver
    first: there are a few receivers, and a great many deliveries)."""
    return and_(event_deliveries.c.receiver_id.in_(select(event_receivers.c.id)),
                event_deliveries.c.supporter_id == supporter_id)


def erase_supporter(session: Session | Connection, supporter_id: int | None,
                    now: datetime) -> None:
    """Really delete a person: signatures (counts follow), consent, voices, inbox messages,
    subscriptions, conversations and identities; an identity that said STOP stays, bare,
    as suppression. Events recorded about them keep their ids only; other systems hear
    `signature.withdrawn` (reason "erased") for each signature, then `supporter.erased`.
    Their parked deliveries go: sent again, they would reach a receiver after
    `supporter.erased` and could bring the person back there. The caller holds the
    person's lock (lock_supporter)."""
    if supporter_id is None:
        return
    conn = session.connection() if isinstance(session, Session) else session
    events.scrub(conn, supporter_id)
    conn.execute(delete(event_deliveries).where(deliveries_of(supporter_id),
                                                event_deliveries.c.status == "failed"))
    for signature_id, petition_id, channel, number, slug in session.execute(
            select(Signature.id, Signature.petition_id, Signature.channel, Signature.number,
                   Petition.slug).join(Petition, Petition.id == Signature.petition_id)
            .where(Signature.supporter_id == supporter_id).order_by(Signature.id)).all():
        uncount(session, petition_id, channel)
        events.record(conn, events.SIGNATURE_WITHDRAWN, events.withdrawn_data(
            slug, signature_id, number, supporter_id, "erased"), supporter_id, now)
    identity_ids = list(session.scalars(
        select(Identity.id).where(Identity.supporter_id == supporter_id)))
    session.execute(delete(Signature).where(Signature.supporter_id == supporter_id))
    session.execute(delete(Voice).where(Voice.supporter_id == supporter_id))
    # The staff inbox: their messages, staff replies (and those replies' deliveries),
    # notes and follow-ups go with the conversation (ON DELETE CASCADE).
    session.execute(delete(InboxConversation).where(
        InboxConversation.supporter_id == supporter_id))
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
    events.record(conn, events.SUPPORTER_ERASED, events.erased_data(supporter_id),
                  supporter_id, now)
    if isinstance(session, Session):
        session.expunge_all()


# An identity's subscriptions, with what their events tell.
SUBSCRIPTIONS_OF = (
    select(subscriptions.c.petition_id, petitions.c.slug, identities.c.channel,
           identities.c.supporter_id)
    .select_from(subscriptions
                 .join(petitions, petitions.c.id == subscriptions.c.petition_id)
                 .join(identities, identities.c.id == subscriptions.c.identity_id))
    .where(subscriptions.c.identity_id == bindparam("identity"))
    .order_by(subscriptions.c.id))


def end_subscriptions(conn: Connection, identity_id: int, reason: str,
                      now: datetime) -> list[int]:
    """End every subscription on this identity (STOP, or the provider's opt-out), one
    `subscription.changed` each; the petitions' ids."""
    ended = conn.execute(SUBSCRIPTIONS_OF, {"identity": identity_id}).all()
    if not ended:
        return []
    conn.execute(delete(subscriptions).where(subscriptions.c.identity_id == identity_id))
    for _, slug, channel, supporter_id in ended:
        events.record(conn, events.SUBSCRIPTION_CHANGED, events.subscription_data(
            supporter_id, slug, channel, False, reason), supporter_id, now)
    return [petition_id for petition_id, *_ in ended]


def uncount(session: Session | Connection, petition_id: int, channel: str) -> None:
    session.execute(update(Petition).where(Petition.id == petition_id)
                    .values(signature_count=Petition.signature_count - 1))
    session.execute(update(ChannelCount).where(ChannelCount.petition_id == petition_id,
                                               ChannelCount.channel == channel)
                    .values(count=ChannelCount.count - 1))


__all__ = ["ConcurrentUpdate", "Found", "Replay", "Sender", "end_subscriptions",
           "erase_supporter", "find", "from_found", "load", "lock_supporter", "stored_state"]
