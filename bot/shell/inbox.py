"""The staff inbox: supporters' words kept for a person, and staff answering them.

Every rule lives here, so the console and the API behave the same: who may reply (editors
and admins; viewers read), whether the channel can carry a reply now (not after STOP, not
to an unreachable identity, not on WhatsApp outside the 24-hour window: no template exists
for free replies), and what each staff action leaves in the audit log.

A supporter has at most one open conversation, whatever channel they write on: their next
message joins it (and replies go to the channel they last wrote on), or opens a new one
once it is closed. Staff replies travel like announcements, through the deliveries outbox
(a direct message: no announcement, its own text), so the worker sends them at the
channel's rate, exactly once, and their delivery state shows in the thread. Staff on
Telegram (`[staff] telegram_ids`) hear of new waiting conversations the same way, with a
link and nothing about the person.

The supporter's words are personal data: never logged, erased with the person, removed
`[retention] inbox_days` after the conversation closed. A `conversation.message` event
carries them to the receivers that asked; erasing the person leaves it only its ids.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session

from bot.core.conversation import Channel
from bot.core.gsm import segments, to_gsm7
from bot.core.phones import mask
from bot.infra import metrics
from bot.infra.config import Inbox
from bot.infra.settings import Settings
from bot.shell import events
from bot.shell.broadcast import is_suppressed
from bot.shell.people import Sender
from bot.shell.staff import audit, may
from bot.shell.unit_of_work import UnitOfWork
from models import (
    ConsentRecord,
    Delivery,
    FollowUp,
    Identity,
    InboundMessage,
    InboxConversation,
    InboxMessage,
    Petition,
    SavedReply,
    Signature,
    StaffUser,
    Subscription,
    Voice,
)
from models.sql import insert_ignore

log = logging.getLogger("petitionbot.inbox")

WHATSAPP_WINDOW = dt.timedelta(hours=24)
PREVIEW = 80
MAX_SMS_SEGMENTS = 3
MAX_TELEGRAM = 4096
MAX_WHATSAPP = 1600
MAX_NOTE = 4000
VIEWS = ("open", "mine", "closed")
# A delivery's status, as a staff reply's state reads in the thread.
DELIVERY_STATE = {"pending": "queued", "claimed": "queued", "sending": "sending",
                  "sent": "sent", "delivered": "delivered", "failed": "failed",
                  "skipped": "skipped", "unknown": "unknown"}
CHANNEL_NAMES = {"sms": "SMS", "whatsapp": "WhatsApp", "telegram": "Telegram"}


class CannotReply(Exception):
    """The channel cannot carry a reply now; `reason` says why, in words for staff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAllowed(Exception):
    """This staff member's role may not do this (a viewer replying, say)."""


class NotFound(LookupError):
    """No such conversation, message or saved reply (erased, or never there)."""


class Invalid(ValueError):
    """What staff wrote cannot be used as it is (empty, too long for the channel)."""


@dataclass(frozen=True)
class Summary:
    id: int
    channel: str
    status: str                       # open | closed
    flagged: bool
    assigned_to: int | None           # a staff user's id
    assigned_name: str | None
    waiting_since: dt.datetime | None  # the oldest supporter message not yet answered
    last_message_at: dt.datetime
    preview: str                      # the start of the latest supporter message
    supporter_id: int


@dataclass(frozen=True)
class Entry:
    id: int
    kind: str                         # in | bot | staff | note
    text: str
    at: dt.datetime
    staff_name: str | None = None
    delivery_state: str | None = None  # a staff reply's: queued, sending, sent, delivered,
                                       # failed, skipped, unknown (may or may not have gone)
    flagged: bool = False


@dataclass(frozen=True)
class Reach:
    can_send: bool
    reason: str                       # why not, in words for staff ("" when it can)
    channel: str
    window_closes_at: dt.datetime | None = None  # WhatsApp: when free replies stop


@dataclass(frozen=True)
class SignedFact:
    petition: str
    number: int
    name: str
    postcode: str | None
    country: str | None
    channel: str
    signed_at: dt.datetime


@dataclass(frozen=True)
class ChannelFact:
    channel: str
    address: str                      # masked
    opted_out_at: dt.datetime | None
    unreachable_at: dt.datetime | None
    last_inbound_at: dt.datetime | None


@dataclass(frozen=True)
class ConsentFact:
    purpose: str
    action: str
    petition: str | None
    channel: str
    at: dt.datetime


@dataclass(frozen=True)
class Facts:
    """What we hold about the supporter."""

    signatures: list[SignedFact] = field(default_factory=list)
    channels: list[ChannelFact] = field(default_factory=list)
    consents: list[ConsentFact] = field(default_factory=list)
    updates: list[tuple[str, str]] = field(default_factory=list)  # (petition, channel)
    voices: list[tuple[str, str]] = field(default_factory=list)   # (petition, status)


@dataclass(frozen=True)
class FollowUpRecord:
    message_id: int
    staff_name: str
    action: str
    at: dt.datetime


@dataclass(frozen=True)
class Thread:
    summary: Summary
    entries: list[Entry]
    facts: Facts
    reach: Reach
    follow_ups: list[FollowUpRecord]


# The inbound path -------------------------------------------------------------------------

def keep(work: UnitOfWork, sender: Sender, channel: Channel | str, text: str, flagged: bool,
         now: dt.datetime, *, provider_id: str = "",
         staff_telegram_ids: tuple[int, ...] = ()) -> bool:
    """Keep a supporter's words for a person, in the message's own unit of work: they join
    the supporter's open conversation or open a new one. Returns whether the supporter had
    already been told, in this open conversation, that a person reads these messages.
    Staff on Telegram hear of a conversation that starts waiting, or becomes flagged;
    other systems, of the message (`conversation.message`)."""
    if sender.supporter_id is None:  # a bare identity (erased, then STOP): nobody to answer
        return False
    conn = work.conn
    channel = str(getattr(channel, "value", channel))
    current = conn.execute(
        select(InboxConversation.id, InboxConversation.told, InboxConversation.flagged,
               InboxConversation.waiting_since)
        .where(InboxConversation.open_supporter_id == sender.supporter_id)).first()
    if current is None:
        conversation_id: int = conn.execute(insert(InboxConversation).values(
            supporter_id=sender.supporter_id, open_supporter_id=sender.supporter_id,
            identity_id=sender.identity_id, channel=channel, status="open", flagged=flagged,
            told=True, opened_at=now, last_message_at=now, waiting_since=now)
            .returning(InboxConversation.id)).scalar_one()
        told, notify = False, True
    else:
        conversation_id = current.id
        told = bool(current.told)
        notify = current.waiting_since is None or (flagged and not current.flagged)
        conn.execute(update(InboxConversation).where(InboxConversation.id == conversation_id)
                     .values(identity_id=sender.identity_id, channel=channel, told=True,
                             flagged=InboxConversation.flagged | flagged,
                             last_message_at=now,
                             waiting_since=func.coalesce(InboxConversation.waiting_since,
                                                         now)))
    message_id: int = conn.execute(insert(InboxMessage).values(
        conversation_id=conversation_id, kind="in", text=text, at=now, flagged=flagged,
        provider_id=provider_id[:80] or None).returning(InboxMessage.id)).scalar_one()
    events.record(conn, events.CONVERSATION_MESSAGE, events.message_data(
        conversation_id, sender.supporter_id, channel, message_id, text, now, flagged),
        sender.supporter_id, now)
    if notify and staff_telegram_ids:
        notify_staff(conn, conversation_id, flagged, staff_telegram_ids, now)
    # Ids only: never the words or who wrote them.
    if flagged:
        log.warning("safeguarding: a supporter's message was flagged for staff (inbox) "
                    "conversation=%s", conversation_id)
    log.info("inbox kept conversation=%s flagged=%s", conversation_id, flagged,
             extra={"event": "inbox", "conversation": conversation_id, "flagged": flagged})
    return told


def inbox_context(sender: Sender, now: dt.datetime,
                  hours: Inbox | None = None) -> tuple[bool, str, int]:
    """For the core's Context: whether the supporter was told in their open conversation,
    when to expect an answer (in words), and how many messages of theirs the inbox holds
    (the first and last read with the sender, by FIND)."""
    return sender.inbox_told, answer_phrase(hours or Inbox(), now), sender.inbox_kept


def answer_phrase(hours: Inbox, now: dt.datetime) -> str:
    """"within 2 working days", and outside office hours when the office opens (GSM-7)."""
    within = f"within {hours.answer_within}"
    local = now.astimezone(zoneinfo.ZoneInfo(hours.timezone))
    if not hours.days:
        return within
    if local.weekday() in hours.days and hours.opens <= local.time() < hours.closes:
        return within
    day = local.date()
    if local.weekday() in hours.days and local.time() < hours.opens:
        when = "today"
    else:
        for ahead in range(1, 8):
            day = local.date() + dt.timedelta(days=ahead)
            if day.weekday() in hours.days:
                break
        when = "tomorrow" if day == local.date() + dt.timedelta(days=1) else \
            f"on {day.strftime('%A')}"
    return f"{within}; the office is closed now and opens {when} at {hours.opens:%H:%M}"


def notify_staff(conn: Connection, conversation_id: int, flagged: bool,
                 staff_telegram_ids: tuple[int, ...], now: dt.datetime) -> None:
    """Queue a short notice to each staff Telegram id: a link, no personal details."""
    link = f"{_base_url()}/staff/inbox/{conversation_id}"
    text = (f"A flagged message is waiting in the inbox: {link}" if flagged
            else f"A new message is waiting in the inbox: {link}")
    for staff_id in staff_telegram_ids:
        address = str(staff_id)
        identity_id = insert_ignore(conn, Identity, {
            "channel": "telegram", "address": address, "created_at": now},
            ["channel", "address"], returning=Identity.id)
        if identity_id is None:
            identity_id = conn.scalar(select(Identity.id).where(
                Identity.channel == "telegram", Identity.address == address))
        conn.execute(insert(Delivery).values(
            announcement_id=None, identity_id=identity_id, channel="telegram",
            status="pending", attempts=0, used_template=False, created_at=now, text=text))


def _base_url() -> str:
    return Settings.from_env().public_base_url


# Reading ----------------------------------------------------------------------------------

def summaries(session: Session, view: str, staff_user_id: int | None,
              limit: int = 200) -> list[Summary]:
    """A list for the console or the API: flagged first, then the newest waiting first."""
    if view not in VIEWS:
        raise Invalid(f"unknown view {view!r}: one of {', '.join(VIEWS)}")
    query = _summary_query()
    if view == "closed":
        query = query.where(InboxConversation.status == "closed").order_by(
            InboxConversation.closed_at.desc(), InboxConversation.id.desc())
    else:
        query = query.where(InboxConversation.status == "open")
        if view == "mine":
            if staff_user_id is None:
                return []
            query = query.where(InboxConversation.assigned_to == staff_user_id)
        query = query.order_by(InboxConversation.flagged.desc(),
                               InboxConversation.waiting_since.is_(None),
                               InboxConversation.waiting_since.desc(),
                               InboxConversation.last_message_at.desc(),
                               InboxConversation.id.desc())
    return [_summary(row) for row in session.execute(query.limit(limit)).all()]


def _summary_query() -> Any:
    latest = (select(InboxMessage.text).where(
        InboxMessage.conversation_id == InboxConversation.id, InboxMessage.kind == "in")
        .order_by(InboxMessage.id.desc()).limit(1).correlate(InboxConversation)
        .scalar_subquery())
    return (select(InboxConversation, StaffUser.email, latest.label("preview"))
            .outerjoin(StaffUser, StaffUser.id == InboxConversation.assigned_to))


def _summary(row: Any) -> Summary:
    c: InboxConversation = row[0]
    return Summary(id=c.id, channel=c.channel, status=c.status, flagged=c.flagged,
                   assigned_to=c.assigned_to, assigned_name=row[1],
                   waiting_since=c.waiting_since, last_message_at=c.last_message_at,
                   preview=(row[2] or "")[:PREVIEW], supporter_id=c.supporter_id)


def waiting_count(session: Session | Connection) -> int:
    """Open conversations waiting for a staff answer."""
    return int(session.scalar(select(func.count()).select_from(InboxConversation).where(
        InboxConversation.status == "open",
        InboxConversation.waiting_since.is_not(None))) or 0)


def thread(session: Session, conversation_id: int, now: dt.datetime) -> Thread | None:
    """A conversation as staff read it: every entry in order, the bot's replies to the
    supporter's messages among them; what we hold; whether a reply can go out now."""
    row = session.execute(_summary_query().where(
        InboxConversation.id == conversation_id)).first()
    if row is None:
        return None
    conversation: InboxConversation = row[0]
    messages = session.scalars(select(InboxMessage).where(
        InboxMessage.conversation_id == conversation_id).order_by(
        InboxMessage.at, InboxMessage.id)).all()
    states = dict(session.execute(select(Delivery.inbox_message_id, Delivery.status).where(
        Delivery.inbox_message_id.in_([m.id for m in messages if m.kind == "staff"]))).all())
    provider_ids = [m.provider_id for m in messages if m.provider_id]
    answered: dict[str, list[dict[str, Any]]] = {}
    if provider_ids:
        for pid, replies in session.execute(select(
                InboundMessage.provider_id, InboundMessage.replies).where(
                InboundMessage.provider_id.in_(provider_ids))).all():
            answered[pid] = replies or []
    entries: list[Entry] = []
    for m in messages:
        state = DELIVERY_STATE.get(states.get(m.id, "")) if m.kind == "staff" else None
        entries.append(Entry(m.id, m.kind, m.text, m.at, m.staff_name, state, m.flagged))
        for reply in answered.get(m.provider_id or "", []):
            if reply.get("text"):
                entries.append(Entry(m.id, "bot", str(reply["text"]), m.at))
    follow_ups = [FollowUpRecord(f.message_id, f.staff_name, f.action, f.at)
                  for f in session.scalars(select(FollowUp).join(
                      InboxMessage, InboxMessage.id == FollowUp.message_id).where(
                      InboxMessage.conversation_id == conversation_id).order_by(
                      FollowUp.at, FollowUp.id))]
    return Thread(_summary(row), entries, facts(session, conversation.supporter_id),
                  reach(session, conversation, now), follow_ups)


def facts(session: Session, supporter_id: int) -> Facts:
    """What we hold about a supporter; addresses masked."""
    signed = [SignedFact(slug, s.number, s.name, s.postcode, s.country, s.channel, s.signed_at)
              for s, slug in session.execute(
                  select(Signature, Petition.slug).join(Petition, Petition.id ==
                                                        Signature.petition_id)
                  .where(Signature.supporter_id == supporter_id)
                  .order_by(Signature.signed_at)).all()]
    identities = session.scalars(select(Identity).where(
        Identity.supporter_id == supporter_id).order_by(Identity.id)).all()
    channels = [ChannelFact(i.channel, mask(i.address), i.opted_out_at, i.unreachable_at,
                            i.last_inbound_at) for i in identities]
    consents = [ConsentFact(c.purpose, c.action, slug, c.channel, c.created_at)
                for c, slug in session.execute(
                    select(ConsentRecord, Petition.slug)
                    .outerjoin(Petition, Petition.id == ConsentRecord.petition_id)
                    .where(ConsentRecord.supporter_id == supporter_id)
                    .order_by(ConsentRecord.created_at, ConsentRecord.id)).all()]
    updates = [(slug, channel) for slug, channel in session.execute(
        select(Petition.slug, Identity.channel)
        .join(Subscription, Subscription.petition_id == Petition.id)
        .join(Identity, Identity.id == Subscription.identity_id)
        .where(Identity.supporter_id == supporter_id)).all()]
    voices = [(slug, status) for slug, status in session.execute(
        select(Petition.slug, Voice.status).join(Petition, Petition.id == Voice.petition_id)
        .where(Voice.supporter_id == supporter_id)).all()]
    return Facts(signed, channels, consents, updates, voices)


def reach(session: Session | Connection, conversation: InboxConversation,
          now: dt.datetime) -> Reach:
    """Whether a reply can go out now on the channel the supporter last wrote on."""
    channel = conversation.channel
    name = CHANNEL_NAMES.get(channel, channel)
    if conversation.status != "open":
        return Reach(False, "This conversation is closed: replies cannot be sent.", channel)
    identity = session.execute(select(
        Identity.opted_out_at, Identity.unreachable_at, Identity.last_inbound_at).where(
        Identity.id == conversation.identity_id)).first()
    if identity is None:
        return Reach(False, f"We no longer hold their {name} address: replies cannot be "
                     "sent.", channel)
    if identity.opted_out_at is not None:
        return Reach(False, f"They said STOP on {name}: replies cannot be sent.", channel)
    if identity.unreachable_at is not None:
        return Reach(False, f"{name} says they cannot be reached (they blocked the bot or "
                     "left): replies cannot be sent.", channel)
    if is_suppressed(session, conversation.identity_id):  # the worker would not send it
        return Reach(False, "Their number is on the suppression list (never to be messaged): "
                     "replies cannot be sent.", channel)
    if channel == Channel.WHATSAPP:
        last = identity.last_inbound_at
        closes = None if last is None else last + WHATSAPP_WINDOW
        if closes is None or closes <= now:
            ago = "never" if last is None else f"last message {_ago(now - last)} ago"
            return Reach(False, f"Outside WhatsApp's 24-hour window ({ago}): a reply needs "
                         "an approved template, and none is set up, so it cannot be sent.",
                         channel, closes)
        return Reach(True, "", channel, closes)
    return Reach(True, "", channel)


def _ago(delta: dt.timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{hours // 24} days"


def as_sent(channel: str, text: str) -> str:
    """A staff reply as `channel` carries it: SMS in GSM-7 (curly quotes, dashes and emoji
    replaced); other channels as written (Telegram's sender escapes it for HTML)."""
    text = text.strip()
    return to_gsm7(text) if channel == Channel.SMS else text


def _checked_reply(channel: str, text: str) -> str:
    body = as_sent(channel, text)
    if not body:
        raise Invalid("Write a reply first.")
    if channel == Channel.SMS and segments(body) > MAX_SMS_SEGMENTS:
        raise Invalid(f"Too long for SMS: {segments(body)} segments; keep it to "
                      f"{MAX_SMS_SEGMENTS} (about 450 characters).")
    if channel == Channel.TELEGRAM and len(body) >= MAX_TELEGRAM:
        raise Invalid(f"Too long for Telegram: keep it under {MAX_TELEGRAM:,} characters.")
    if channel == Channel.WHATSAPP and len(body) > MAX_WHATSAPP:
        raise Invalid(f"Too long for WhatsApp: keep it to {MAX_WHATSAPP:,} characters.")
    return body


# Staff actions ----------------------------------------------------------------------------

def _editor(staff: StaffUser) -> None:
    if not staff.active or not may(staff.role, "editor"):
        raise NotAllowed("only editors and admins may do this")


def _conversation(session: Session, conversation_id: int, lock: bool = False
                  ) -> InboxConversation:
    query = select(InboxConversation).where(InboxConversation.id == conversation_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"no conversation {conversation_id}")
    return found


def reply(session: Session, conversation_id: int, staff: StaffUser, text: str,
          now: dt.datetime) -> Entry:
    """A staff reply, queued through the outbox to the channel the supporter last wrote on.
    NotAllowed for a viewer; CannotReply when the channel cannot carry it now; Invalid when
    it is empty or too long for the channel. Unassigned, the conversation becomes theirs."""
    _editor(staff)
    conversation = _conversation(session, conversation_id, lock=True)
    can = reach(session, conversation, now)
    if not can.can_send:
        raise CannotReply(can.reason)
    body = _checked_reply(conversation.channel, text)
    message = InboxMessage(conversation_id=conversation.id, kind="staff", text=body, at=now,
                           flagged=False, staff_user_id=staff.id, staff_name=staff.email)
    session.add(message)
    session.flush()
    session.add(Delivery(announcement_id=None, identity_id=conversation.identity_id,
                         channel=conversation.channel, status="pending", attempts=0,
                         used_template=False, created_at=now, text=body,
                         inbox_message_id=message.id))
    if conversation.first_reply_at is None:
        conversation.first_reply_at = now
        metrics.observe_first_reply(conversation.channel,
                                    (now - conversation.opened_at).total_seconds())
    conversation.waiting_since = None
    if conversation.assigned_to is None:
        conversation.assigned_to = staff.id
    audit(session, staff.email, "inbox.reply", f"conversation:{conversation.id}",
          {"message": message.id, "channel": conversation.channel}, now)
    session.flush()
    return Entry(message.id, "staff", body, now, staff.email, "queued")


def assign(session: Session, conversation_id: int, staff: StaffUser,
           now: dt.datetime) -> None:
    """Assign the conversation to this staff member (editors and admins)."""
    _editor(staff)
    conversation = _conversation(session, conversation_id, lock=True)
    conversation.assigned_to = staff.id
    audit(session, staff.email, "inbox.assign", f"conversation:{conversation.id}", None, now)


def note(session: Session, conversation_id: int, staff: StaffUser, text: str,
         now: dt.datetime) -> Entry:
    """An internal note: staff read it in the thread; it is never sent."""
    _editor(staff)
    conversation = _conversation(session, conversation_id)
    text = text.strip()
    if not text:
        raise Invalid("Write a note first.")
    if len(text) > MAX_NOTE:
        raise Invalid(f"Keep a note under {MAX_NOTE:,} characters.")
    message = InboxMessage(conversation_id=conversation.id, kind="note", text=text, at=now,
                           flagged=False, staff_user_id=staff.id, staff_name=staff.email)
    session.add(message)
    session.flush()
    audit(session, staff.email, "inbox.note", f"conversation:{conversation.id}",
          {"message": message.id}, now)
    return Entry(message.id, "note", text, now, staff.email)


def close(session: Session, conversation_id: int, staff: StaffUser, now: dt.datetime) -> None:
    """Close it: the supporter's next message opens a new conversation."""
    _editor(staff)
    conversation = _conversation(session, conversation_id, lock=True)
    if conversation.status == "closed":
        return
    conversation.status, conversation.open_supporter_id = "closed", None
    conversation.closed_at, conversation.closed_by = now, staff.email
    conversation.waiting_since = None
    audit(session, staff.email, "inbox.close", f"conversation:{conversation.id}", None, now)


def follow_up(session: Session, message_id: int, staff: StaffUser, action: str,
              now: dt.datetime) -> None:
    """Record what was done about a flagged message: who, when, what."""
    _editor(staff)
    action = action.strip()
    if not action:
        raise Invalid("Say what was done.")
    message = session.get(InboxMessage, message_id)
    if message is None:
        raise NotFound(f"no message {message_id}")
    session.add(FollowUp(message_id=message_id, staff_user_id=staff.id,
                         staff_name=staff.email, action=action[:MAX_NOTE], at=now))
    audit(session, staff.email, "inbox.follow_up", f"conversation:{message.conversation_id}",
          {"message": message_id}, now)


def saved_replies(session: Session) -> list[tuple[int, str, str]]:
    """(id, title, text) of every saved reply, by title."""
    return [(r.id, r.title, r.text) for r in session.scalars(
        select(SavedReply).order_by(SavedReply.title, SavedReply.id))]


def save_reply(session: Session, staff: StaffUser, title: str, text: str,
               now: dt.datetime | None = None) -> int:
    """Save a reply for reuse (editors and admins); returns its id."""
    _editor(staff)
    title, text = title.strip(), text.strip()
    if not title or not text:
        raise Invalid("A saved reply needs a title and a text.")
    when = now or dt.datetime.now(dt.UTC)
    saved = SavedReply(title=title[:80], text=text[:MAX_NOTE], created_by=staff.email,
                       created_at=when)
    session.add(saved)
    session.flush()
    audit(session, staff.email, "inbox.saved_reply.create", f"saved_reply:{saved.id}", None,
          when)
    return saved.id


def delete_saved_reply(session: Session, staff: StaffUser, reply_id: int) -> None:
    """Delete a saved reply (editors and admins)."""
    _editor(staff)
    saved = session.get(SavedReply, reply_id)
    if saved is None:
        raise NotFound(f"no saved reply {reply_id}")
    session.delete(saved)
    audit(session, staff.email, "inbox.saved_reply.delete", f"saved_reply:{reply_id}")


# Privacy ----------------------------------------------------------------------------------

def subject_access(session: Session, supporter_id: int) -> list[dict[str, Any]]:
    """The supporter's inbox conversations for a subject access request: their words,
    staff replies (with who sent them and whether they arrived), staff notes and
    follow-ups, which are data about them too."""
    out: list[dict[str, Any]] = []
    for conversation in session.scalars(select(InboxConversation).where(
            InboxConversation.supporter_id == supporter_id).order_by(InboxConversation.id)):
        found = thread(session, conversation.id, conversation.last_message_at)
        if found is None:
            continue
        out.append({
            "channel": conversation.channel, "status": conversation.status,
            "opened_at": conversation.opened_at.isoformat(),
            "closed_at": _iso(conversation.closed_at), "flagged": conversation.flagged,
            "messages": [{"kind": e.kind, "text": e.text, "at": e.at.isoformat(),
                          "staff": e.staff_name, "delivery": e.delivery_state}
                         for e in found.entries],
            "follow_ups": [{"staff": f.staff_name, "action": f.action,
                            "at": f.at.isoformat()} for f in found.follow_ups]})
    return out


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


__all__ = ["CannotReply", "ChannelFact", "ConsentFact", "Entry", "Facts", "FollowUpRecord",
           "Invalid", "NotAllowed", "NotFound", "Reach", "SignedFact", "Summary", "Thread",
           "answer_phrase", "as_sent", "assign", "close", "delete_saved_reply", "facts",
           "follow_up", "inbox_context", "keep", "note", "notify_staff", "reach", "reply",
           "save_reply", "saved_replies", "subject_access", "summaries", "thread",
           "waiting_count"]
