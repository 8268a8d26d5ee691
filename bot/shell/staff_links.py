"""A staff member's own phone numbers and Telegram chats, for test sends to themselves.

Rules: a chat is linked by proving it is theirs. The console shows a one-time code
("PB 4829 1173"); the chat that messages exactly that code to the bot, on SMS, WhatsApp or
Telegram, becomes their linked address on that channel (one per channel: linking again
replaces it). A code lasts CODE_LIFETIME, a staff member has one at a time (asking again
replaces it), it is used once, and only its hash is kept. Text that is not a valid code
goes on to the conversation untouched: the inbound path pays one regex match for it, and a
database lookup only for text shaped like a code.

A test send copies a draft to its requester's linked addresses (and the operator's
`[staff] test_group`), through the same outbox, worker and senders as supporters' copies
(bot.shell.broadcast): the same rendering, never counted against supporters, and nothing
to a chat that said STOP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.orm import Session

from bot.core.conversation import Channel
from bot.core.phones import mask
from bot.core.render import Message
from bot.infra.config import Config
from bot.shell import broadcast, people
from bot.shell.unit_of_work import UnitOfWork
from models import Announcement, AuditEntry, Identity, Petition, StaffAddress, StaffUser
from models.staff import StaffLinkCode

CODE_LIFETIME = dt.timedelta(minutes=15)
PREFIX = "PB"
# "PB 4829 1173", however it was typed ("pb48291173", "PB-4829-1173"), or arriving from a
# Telegram link to the bot as "/start PB48291173".
CODE = re.compile(rf"(?:/start\s+)?{PREFIX}[\s-]*(\d{{4}})[\s-]*(\d{{4}})", re.IGNORECASE)
CHANNEL_NAMES = {"sms": "SMS", "whatsapp": "WhatsApp", "telegram": "Telegram"}


@dataclass(frozen=True)
class Code:
    """A code just made: shown once, in the console; only its hash is stored."""

    digits: str  # the eight digits
    expires_at: dt.datetime

    @property
    def shown(self) -> str:
        """As staff read and type it: "PB 4829 1173"."""
        return f"{PREFIX} {self.digits[:4]} {self.digits[4:]}"

    @property
    def start_payload(self) -> str:
        """As a Telegram link to the bot carries it (letters and digits only)."""
        return PREFIX + self.digits


@dataclass(frozen=True)
class Linked:
    """One of a staff member's linked addresses, as the console shows it."""

    channel: str
    shown: str  # partly masked
    linked_at: dt.datetime
    stopped: bool  # said STOP there: nothing is sent until they send START
    unreachable: bool  # the provider says it cannot be reached (e.g. the bot was blocked)

    @property
    def ready(self) -> bool:
        return not (self.stopped or self.unreachable)

    @property
    def channel_name(self) -> str:
        return CHANNEL_NAMES[self.channel]


@dataclass(frozen=True)
class QueuedTest:
    """A test copy, queued: its announcement and how many messages it makes."""

    announcement_id: int
    queued: int


def code_hash(digits: str) -> str:
    return hashlib.sha256(f"{PREFIX}{digits}".encode()).hexdigest()


def issue_code(session: Session, staff_user_id: int, now: dt.datetime) -> Code:
    """A new code for this staff member, replacing any they had; expired codes go too."""
    session.execute(delete(StaffLinkCode).where(or_(
        StaffLinkCode.staff_user_id == staff_user_id, StaffLinkCode.expires_at <= now)))
    while True:  # two live codes alike: about one chance in a hundred million
        digits = f"{secrets.randbelow(10**8):08d}"
        if session.get(StaffLinkCode, code_hash(digits)) is None:
            break
    code = Code(digits, now + CODE_LIFETIME)
    session.add(StaffLinkCode(code_hash=code_hash(digits), staff_user_id=staff_user_id,
                              expires_at=code.expires_at))
    session.flush()
    return code


def waiting_code(session: Session, staff_user_id: int, now: dt.datetime) -> dt.datetime | None:
    """When this staff member's unused code expires (None: they have none waiting)."""
    return session.scalar(select(StaffLinkCode.expires_at).where(
        StaffLinkCode.staff_user_id == staff_user_id, StaffLinkCode.expires_at > now))


def link(work: UnitOfWork, sender: people.Sender, channel: Channel, address: str, text: str,
         now: dt.datetime) -> tuple[Message, ...] | None:
    """If `text` is a valid code, link the chat it came from to the code's staff member and
    return the bot's answer (none to a chat that said STOP: it hears nothing until START);
    else None, and the message goes on to the conversation."""
    found = CODE.fullmatch(text.strip())
    if found is None:
        return None
    digits = found.group(1) + found.group(2)
    conn = work.conn
    owner = conn.execute(
        select(StaffUser.id, StaffUser.email)
        .join(StaffLinkCode, StaffLinkCode.staff_user_id == StaffUser.id)
        .where(StaffLinkCode.code_hash == code_hash(digits), StaffLinkCode.expires_at > now,
               StaffUser.active.is_(True))).first()
    # Only the message that deletes the code uses it (a copy that raced it finds it gone).
    if owner is None or conn.execute(delete(StaffLinkCode).where(
            StaffLinkCode.code_hash == code_hash(digits))).rowcount != 1:
        return None
    conn.execute(delete(StaffAddress).where(StaffAddress.staff_user_id == owner.id,
                                            StaffAddress.channel == channel.value))
    conn.execute(insert(StaffAddress).values(staff_user_id=owner.id, channel=channel.value,
                                             address=address, linked_at=now))
    conn.execute(insert(AuditEntry).values(
        at=now, actor=owner.email, action="test_sends.link", target=f"staff:{owner.id}",
        detail={"channel": channel.value, "address": masked(channel.value, address)}))
    # They wrote to us: reachable, and (WhatsApp) inside the 24-hour window for a test.
    sender.last_inbound_at, sender.unreachable_at = now, None
    people.save(work, sender, None, now)
    if sender.opted_out_at is not None:
        return ()
    return (Message(f"This chat is now linked to the staff account {owner.email} for test "
                    "sends: \"Send a test to me\" in the petition console sends drafts "
                    "here, as supporters will get them. To unlink it, use Test sends in "
                    "the console."),)


def addresses(session: Session, staff_user_id: int) -> list[Linked]:
    """This staff member's linked addresses, by channel, with whether each can get a test."""
    rows = session.execute(
        select(StaffAddress.channel, StaffAddress.address, StaffAddress.linked_at,
               Identity.opted_out_at, Identity.unreachable_at)
        .outerjoin(Identity, and_(Identity.channel == StaffAddress.channel,
                                  Identity.address == StaffAddress.address))
        .where(StaffAddress.staff_user_id == staff_user_id)
        .order_by(StaffAddress.channel)).all()
    return [Linked(channel, masked(channel, address), linked_at, stopped is not None,
                   unreachable is not None)
            for channel, address, linked_at, stopped, unreachable in rows]


def unlink(session: Session, staff_user_id: int, channel: str) -> bool:
    """Forget this staff member's address on `channel` (whether there was one)."""
    result = session.execute(delete(StaffAddress).where(
        StaffAddress.staff_user_id == staff_user_id, StaffAddress.channel == channel))
    return bool(getattr(result, "rowcount", 0))


def masked(channel: str, address: str) -> str:
    """Enough of an address to tell two apart, not to dial or message it."""
    if channel == Channel.TELEGRAM:
        return f"chat ending {address[-3:]}"
    return mask(address)


def send_test(session: Session, config: Config, source: Announcement, user: StaffUser,
              now: dt.datetime) -> QueuedTest:
    """Queue a copy of `source` to `user`'s linked addresses (on its channels, if it names
    any), sent at once by the workers. BroadcastError, with the reason in words, when
    nobody would get it: nothing is then written."""
    slug = session.scalar(select(Petition.slug).where(Petition.id == source.petition_id))
    assert slug is not None  # an announcement's petition is never deleted
    test = broadcast.create(
        session, config, slug, source.text, user.email,
        broadcast.Audience(tuple(source.channels), test_group=True), now=now,
        content_sid=source.whatsapp_content_sid, variables=source.whatsapp_variables)
    queued = broadcast.approve(session, config, test, user.email, now)
    if not queued:
        raise broadcast.BroadcastError(_nobody(addresses(session, user.id), source.channels))
    return QueuedTest(test.id, queued)


def _nobody(linked: list[Linked], channels: list[str]) -> str:
    """Why a test would reach nobody."""
    if not linked:
        return ("you have no phone or Telegram linked for test sends yet: link one on the "
                "Test sends page, then try again")
    usable = [a for a in linked if not channels or a.channel in channels]
    if not usable:
        names = " or ".join(CHANNEL_NAMES[c] for c in channels)
        return f"this announcement goes by {names} only, and you have nothing linked there"
    if any(a.stopped for a in usable):
        return "your linked chat said STOP: send START from it to get tests again"
    return ("your linked chats cannot be reached now (the provider refused them): link "
            "them again")
