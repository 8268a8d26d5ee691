"""Announcements -> deliveries (the outbox) -> workers.

Rules: the delivery rows for every recipient exist before the first send, written by one
set-based statement; nobody who said STOP, is unreachable, withdrew consent or is on the
suppression list (`suppressed`, which the worker also checks before every send) is among
them; a row is marked `sending` (committed) before its provider call, so a crash leaves it
`unknown`, never resent; every text names the charity and says how to stop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session

from bot.core.conversation import Channel
from bot.core.gsm import encoding, segments, to_gsm7, unicode_forcing_characters
from bot.core.outcomes import Job
from bot.core.postcodes import Nation
from bot.infra.clock import utcnow
from bot.infra.config import Config, Petition
from models import Announcement, Delivery, Identity, Signature, Subscription
from models.base import UTCDateTime
from models.broadcast import DONE, OPEN
from models.db import is_postgres
from models.sql import insert_ignore
from models.staff import StaffAddress, StaffUser
from models.supporters import petition_id
from models.tables import identities, supporters, suppressions

WHATSAPP_WINDOW = dt.timedelta(hours=24)
# An instruction ("Reply STOP", "send stop"), not just the word: "we will not STOP" tells
# nobody how to stop the messages.
FRESH_STATISTICS_AT = 10_000
STOP_WORD = re.compile(r"\b(?:reply|send|text)\s+STOP\b", re.IGNORECASE)
POSTCODE_AREA = re.compile(r"^[A-Z]{1,4}$")  # "EH", "G": the letters a postcode starts with
TEMPLATE_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")  # a Twilio Content SID
PHONE_CHANNELS = ("sms", "whatsapp")  # channels whose address is a phone number


class BroadcastError(Exception):
    """A staff action that cannot be done (wrong state, unknown petition...). `field`
    names the input at fault (an API answers 400 naming it); without one, the
    announcement's state is (409)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ApprovalRefused(BroadcastError):
    """This person may not approve this announcement (its author or last editor): an API
    answers 403, not a conflict."""


@dataclass(frozen=True)
class Audience:
    channels: tuple[str, ...] = ()
    nations: tuple[str, ...] = ()
    postcode_areas: tuple[str, ...] = ()
    test_group: bool = False


@dataclass(frozen=True)
class Preview:
    texts: dict[str, str]
    recipients: dict[str, int]
    sms_segments: int
    sms_encoding: str
    sms_replaced: list[str]
    whatsapp_outside_window: int
    whatsapp_template: bool

    def lines(self) -> list[str]:
        total = sum(self.recipients.values())
        out = [f"Recipients: {total:,} (" + ", ".join(
            f"{c} {n:,}" for c, n in sorted(self.recipients.items())) + ")"]
        for channel, body in sorted(self.texts.items()):
            out.append(f"--- {channel} ---")
            out.append(body)
        out.append(f"SMS: {self.sms_segments} segment(s), {self.sms_encoding}"
                   + (f"; replaced {' '.join(self.sms_replaced)} with plain characters"
                      if self.sms_replaced else ""))
        if self.whatsapp_outside_window:
            fate = "get the template" if self.whatsapp_template else "be skipped (no template)"
            out.append(f"WhatsApp: {self.whatsapp_outside_window:,} recipient(s) outside the "
                       f"24-hour window will {fate}")
        return out


def compose(text: str, channel: str, config: Config) -> str:
    """The text as `channel` sends it: names the charity, says how to stop."""
    org = config.organisation
    body = text.strip()
    if org.name.lower() not in body.lower() and org.short_name.lower() not in body.lower():
        body = f"{org.short_name}: {body}"
    if not STOP_WORD.search(body):
        verb = "Send" if channel == Channel.TELEGRAM else "Reply"
        body += f"\n{verb} STOP to stop these messages."
    return to_gsm7(body) if channel == Channel.SMS else body


def create(session: Session, config: Config, slug: str, text: str, created_by: str,
           audience: Audience = Audience(), now: dt.datetime | None = None,
           content_sid: str | None = None, variables: dict[str, Any] | None = None,
           milestone: int | None = None) -> Announcement:
    """A draft announcement."""
    text = _checked(text, audience, content_sid)
    petition_id = _petition_id(session, slug)
    announcement = Announcement(
        petition_id=petition_id, status="draft", text=text, channels=list(audience.channels),
        nations=list(audience.nations), postcode_areas=[a.upper() for a in audience.postcode_areas],
        test_group=audience.test_group, whatsapp_content_sid=content_sid,
        whatsapp_variables=variables, milestone=milestone, created_by=created_by,
        created_at=now or utcnow())
    session.add(announcement)
    session.flush()
    return announcement


def preview(session: Session, config: Config, announcement: Announcement,
            now: dt.datetime) -> Preview:
    """What each channel will show, how many will receive it, SMS cost and WhatsApp window."""
    audience = _audience(session, config, announcement).subquery()
    recipients: dict[str, int] = dict(session.execute(select(audience.c.channel, func.count())
                                      .group_by(audience.c.channel)).all())
    channels = announcement.channels or [c.value for c in Channel]
    texts = {c: compose(announcement.text, c, config) for c in channels}
    sms = compose(announcement.text, Channel.SMS, config)
    raw_sms = compose(announcement.text, Channel.WHATSAPP, config)  # before GSM-7 folding
    outside = 0
    if Channel.WHATSAPP in channels:
        outside = session.scalar(select(func.count()).select_from(Identity).where(
            Identity.id.in_(select(audience.c.id)), Identity.channel == Channel.WHATSAPP,
            or_(Identity.last_inbound_at.is_(None),
                Identity.last_inbound_at < now - WHATSAPP_WINDOW))) or 0
    return Preview(texts=texts, recipients={c: recipients.get(c, 0) for c in channels},
                   sms_segments=segments(sms), sms_encoding=encoding(sms),
                   sms_replaced=unicode_forcing_characters(raw_sms),
                   whatsapp_outside_window=outside,
                   whatsapp_template=bool(announcement.whatsapp_content_sid))


def _checked(text: str, audience: Audience, content_sid: str | None = None) -> str:
    """The text as stored; BroadcastError naming the field if it, the audience or the
    WhatsApp template cannot be sent."""
    text = text.strip()
    if not text:
        raise BroadcastError("the announcement has no text", "text")
    if len(text) > 1200:
        raise BroadcastError("keep an announcement under 1,200 characters", "text")
    unknown = set(audience.channels) - {c.value for c in Channel}
    if unknown:
        raise BroadcastError(f"unknown channel(s): {', '.join(sorted(unknown))}", "channels")
    unknown = set(audience.nations) - {n.value for n in Nation}
    if unknown:
        raise BroadcastError(f"unknown nation(s): {', '.join(sorted(unknown))}", "nations")
    wrong = [a for a in audience.postcode_areas if not POSTCODE_AREA.match(a.upper())]
    if wrong:
        raise BroadcastError(f"not postcode areas: {', '.join(wrong)} (use the letters only, "
                             "e.g. EH)", "postcode_areas")
    if content_sid and not TEMPLATE_SID.match(content_sid):
        raise BroadcastError("a WhatsApp template's Content SID is HX and 32 hexadecimal "
                             "digits", "whatsapp_template")
    return text


def edit(session: Session, announcement: Announcement, text: str, audience: Audience,
         by: str, content_sid: str | None = None) -> bool:
    """Change a draft's text and audience (whether anything changed).

    Whoever changes it becomes its last editor (`edited_by`), whom approve() refuses as
    its approver: otherwise an admin could rewrite someone else's draft and send it alone.
    Saving it unchanged keeps the last editor, who must not be replaced by a mere look.
    """
    if announcement.status != "draft":
        raise BroadcastError(f"only a draft can be edited; this one is {announcement.status}")
    text = _checked(text, audience, content_sid)
    before = digest(announcement)
    announcement.text = text
    announcement.channels = list(audience.channels)
    announcement.nations = list(audience.nations)
    announcement.postcode_areas = [a.upper() for a in audience.postcode_areas]
    announcement.test_group = audience.test_group
    announcement.whatsapp_content_sid = content_sid or None
    if digest(announcement) == before:
        return False
    announcement.edited_by = by
    return True


def digest(announcement: Announcement) -> str:
    """A short fingerprint of what would be sent and to whom: an approval names the
    version its approver saw, so a change made meanwhile is not approved unseen."""
    content = json.dumps([announcement.text, sorted(announcement.channels or []),
                          sorted(announcement.nations or []),
                          sorted(announcement.postcode_areas or []),
                          bool(announcement.test_group), announcement.whatsapp_content_sid,
                          announcement.whatsapp_variables], sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def approval_refusal(config: Config, announcement: Announcement, by: str) -> str | None:
    """Why `by` may not approve this announcement ("you wrote it"), or None if they may.

    The one home of the second-approval rule (DESIGN §8): with
    `console.require_second_approval`, nobody approves an announcement whose text they
    wrote or last edited, whichever staff path they use. A copy for the staff test group
    reaches only staff, as any editor may send, so its sender may approve it.
    """
    if not config.console.require_second_approval or announcement.test_group:
        return None
    me = by.strip().casefold()
    if me == (announcement.created_by or "").strip().casefold():
        return "you wrote this announcement"
    if me == (announcement.edited_by or "").strip().casefold():
        return "you last edited this announcement"
    # A console login and a Telegram account cannot be told to be the same person, so a
    # draft is approved where its author and last editor worked: else one person could
    # write it in one place and approve it in the other.
    mine = _staff_place(me)
    for name in (announcement.created_by, announcement.edited_by):
        theirs = _staff_place((name or "").strip().casefold())
        if mine and theirs and mine != theirs:
            return f"it was written or edited in {theirs}: approve it there"
    return None


def _staff_place(name: str) -> str | None:
    """Where a staff name acts: "Telegram", "the console", or None (the CLI, a
    milestone)."""
    if name.startswith("telegram:"):
        return "Telegram"
    return "the console" if "@" in name else None


def approve(session: Session, config: Config, announcement: Announcement, by: str,
            now: dt.datetime, at: dt.datetime | None = None, *, seen: str | None = None,
            operator: bool = False) -> int:
    """Approve a draft: schedule it, or start it now (returns the recipients queued).

    `by` must not be its author or last editor (approval_refusal). `seen`, the digest of
    the version the approver was shown, refuses a draft changed since. `operator` is for
    the operator's command line only, which acts with the server's own authority and may
    approve its own drafts; no staff path passes it.
    """
    check_approval(config, announcement, by, seen=seen, operator=operator)
    announcement.approved_by, announcement.approved_at = by, now
    if at is not None and at > now:
        announcement.status, announcement.scheduled_at = "scheduled", at
        return 0
    return start(session, config, announcement, now)


def check_approval(config: Config, announcement: Announcement, by: str, *,
                   seen: str | None = None, operator: bool = False) -> None:
    """Raise what approve() would refuse with (not a draft, ApprovalRefused, changed since
    `seen`); return if `by` may approve it: asked before a question such as the console's
    quiet-hours confirmation, so nobody confirms what would be refused anyway."""
    if announcement.status != "draft":
        raise BroadcastError(f"announcement {announcement.id} is {announcement.status}, "
                             "not a draft")
    refusal = None if operator else approval_refusal(config, announcement, by)
    if refusal:
        raise ApprovalRefused(f"{refusal}, so another staff member must approve it")
    if seen is not None and seen != digest(announcement):
        raise BroadcastError(f"announcement {announcement.id} has changed since you saw it: "
                             "check it again before approving")


def start(session: Session, config: Config, announcement: Announcement,
          now: dt.datetime) -> int:
    """Write the outbox, one row per recipient, set-based; then the workers may send."""
    audience = _audience(session, config, announcement).subquery()
    # WHERE true: SQLite would otherwise read ON CONFLICT as a join's ON.
    rows = select(literal(announcement.id), audience.c.id, audience.c.channel,
                  literal("pending"), literal(0), literal(False),
                  literal(now, UTCDateTime())).where(true())
    columns = ["announcement_id", "identity_id", "channel", "status", "attempts",
               "used_template", "created_at"]
    dialect = _dialect(session)
    session.execute(dialect.insert(Delivery).from_select(columns, rows)
                    .on_conflict_do_nothing(index_elements=["announcement_id", "identity_id"]))
    if not announcement.test_group:
        _apply_frequency_cap(session, config, announcement, now)
    announcement.status, announcement.started_at = "sending", now
    session.flush()
    queued: int = session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.announcement_id == announcement.id, Delivery.status == "pending")) or 0
    if queued >= FRESH_STATISTICS_AT and is_postgres(session):
        # Statistics from before a big outbox would have the planner sort every pending
        # row to claim fifty (40 ms per claim at 100,000 instead of 4).
        session.execute(text("ANALYZE deliveries"))
    return queued


def _apply_frequency_cap(session: Session, config: Config, announcement: Announcement,
                         now: dt.datetime) -> None:
    since = now - dt.timedelta(days=config.broadcast.frequency_days)
    recent = (select(Delivery.identity_id)
              .join(Announcement, Announcement.id == Delivery.announcement_id)
              .where(Delivery.announcement_id != announcement.id,
                     Announcement.test_group.is_(False),
                     Delivery.status.in_(("sending", "sent", "delivered", "unknown")),
                     # a send in doubt (`unknown`) has no sent_at, but probably arrived
                     func.coalesce(Delivery.sent_at, Delivery.updated_at) >= since)
              .group_by(Delivery.identity_id)
              .having(func.count() >= config.broadcast.frequency_cap))
    session.execute(update(Delivery).where(
        Delivery.announcement_id == announcement.id, Delivery.status == "pending",
        Delivery.identity_id.in_(recent)).values(status="skipped", error_code="frequency_cap",
                                                 updated_at=now))


def suppressed(identity: Any = identities) -> ColumnElement[bool]:
    """Whether the row of `identity` (the identities table, correlated from the enclosing
    query) must never be messaged: an SMS or WhatsApp address on the suppression list
    (bot/shell/imports.py), or any channel, Telegram too, of a person whose phone is on it.
    From the moment a number is imported: the worker asks this before every send."""
    # Equalities, not IN: an IN list is expanded anew at each execution, and the worker
    # runs this for every message it sends.
    by_address = and_(or_(*(identity.c.channel == c for c in PHONE_CHANNELS)),
                      exists().where(suppressions.c.phone == identity.c.address))
    by_person = exists().where(supporters.c.id == identity.c.supporter_id,
                               suppressions.c.phone == supporters.c.phone)
    return or_(by_address, by_person)


def is_suppressed(session: Session | Connection, identity_id: int) -> bool:
    """Whether this identity must never be messaged (`suppressed`)."""
    return bool(session.scalar(select(exists().where(identities.c.id == identity_id,
                                                     suppressed()))))


def _audience(session: Session, config: Config, announcement: Announcement) -> Any:
    """SELECT id, channel of every identity this announcement may go to."""
    reachable = and_(Identity.opted_out_at.is_(None), Identity.unreachable_at.is_(None),
                     ~suppressed())
    if announcement.test_group:
        members = test_members(session, config, announcement)
        ensure_test_identities(session, members)
        matches = [and_(Identity.channel == c, Identity.address == a) for c, a in members]
        query = select(Identity.id, Identity.channel).where(reachable, or_(*matches) if matches
                                                            else literal(False))
    else:
        query = (select(Identity.id, Identity.channel)
                 .join(Subscription, Subscription.identity_id == Identity.id)
                 .where(Subscription.petition_id == announcement.petition_id, reachable))
        signed = select(Signature.id).where(Signature.supporter_id == Identity.supporter_id,
                                            Signature.petition_id == announcement.petition_id)
        if announcement.nations:
            query = query.where(exists(signed.where(Signature.nation.in_(announcement.nations))))
        if announcement.postcode_areas:
            query = query.where(exists(signed.where(
                Signature.postcode_area.in_(announcement.postcode_areas))))
    if announcement.channels:
        query = query.where(Identity.channel.in_(announcement.channels))
    return query


def test_members(session: Session, config: Config,
                 announcement: Announcement) -> list[tuple[str, str]]:
    """(channel, address) of everyone a test copy goes to: the chats its requester (its
    author) linked to their staff account (bot.shell.staff_links), and the numbers the
    operator lists in `[staff] test_group`."""
    linked = session.execute(
        select(StaffAddress.channel, StaffAddress.address)
        .join(StaffUser, StaffUser.id == StaffAddress.staff_user_id)
        .where(StaffUser.email == announcement.created_by, StaffUser.active.is_(True))).all()
    operator = [member.split(":", 1) for member in config.staff.test_group]
    return list(dict.fromkeys([(c, a) for c, a in linked] + [(c, a) for c, a in operator]))


def ensure_test_identities(session: Session, members: Iterable[Sequence[str]]) -> None:
    """Test addresses get identities to send to, if they have none (an operator's test
    number that never wrote to the bot, or a linked chat whose identity was erased):
    without a person, so never counted as a supporter."""
    now = utcnow()
    for channel, address in members:
        insert_ignore(session, Identity, {"channel": channel, "address": address,
                                          "created_at": now}, ["channel", "address"])


def cancel(session: Session, announcement: Announcement, by: str, now: dt.datetime) -> int:
    """Stop an announcement: whatever was not yet handed to a provider is skipped."""
    if announcement.status in ("sent", "cancelled"):
        raise BroadcastError(f"announcement {announcement.id} is already {announcement.status}")
    announcement.status, announcement.cancelled_by = "cancelled", by
    announcement.finished_at = now
    result = session.execute(update(Delivery).where(
        Delivery.announcement_id == announcement.id, Delivery.status.in_(("pending", "claimed")))
        .values(status="skipped", error_code="cancelled", updated_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


def pause(session: Session, announcement: Announcement) -> None:
    if announcement.status != "sending":
        raise BroadcastError(f"announcement {announcement.id} is not sending")
    announcement.status = "paused"


def resume(session: Session, announcement: Announcement) -> None:
    if announcement.status != "paused":
        raise BroadcastError(f"announcement {announcement.id} is not paused")
    announcement.status = "sending"


def skip_pending_for(session: Session | Connection, identity_id: int, reason: str,
                     now: dt.datetime) -> None:
    """Someone said STOP (or became unreachable): nothing more goes to them."""
    session.execute(update(Delivery).where(Delivery.identity_id == identity_id,
                                           Delivery.status.in_(("pending", "claimed")))
                    .values(status="skipped", error_code=reason, updated_at=now))


def find(session: Session, announcement_id: int, lock: bool = False) -> Announcement | None:
    """The announcement with this id (None when there is none); `lock` holds its row to
    the end of the transaction on PostgreSQL (SQLite's one writer needs no row lock)."""
    query = select(Announcement).where(Announcement.id == announcement_id)
    if lock and is_postgres(session):
        query = query.with_for_update()
    return session.scalar(query)


def delivery_counts(session: Session, ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """These announcements' deliveries by status, as stored (one GROUP BY for a list)."""
    counts: dict[int, dict[str, int]] = {}
    for aid, status, n in session.execute(
            select(Delivery.announcement_id, Delivery.status, func.count())
            .where(Delivery.announcement_id.in_(list(ids)))
            .group_by(Delivery.announcement_id, Delivery.status)):
        counts.setdefault(aid, {})[status] = n
    return counts


def progress(session: Session, announcement_id: int) -> dict[str, int]:
    counts = dict(session.execute(
        select(Delivery.status, func.count()).where(Delivery.announcement_id == announcement_id)
        .group_by(Delivery.status)).all())
    return {status: counts.get(status, 0) for status in (*OPEN, *DONE)}


def promote_due(session: Session, config: Config, now: dt.datetime) -> list[int]:
    """Start every scheduled announcement whose time has come."""
    query = select(Announcement).where(Announcement.status == "scheduled",
                                       Announcement.scheduled_at <= now)
    if is_postgres(session):  # two workers must not both start one announcement
        query = query.with_for_update(skip_locked=True)
    due = session.scalars(query).all()
    for announcement in due:
        start(session, config, announcement, now)
    return [a.id for a in due]


def finish_complete(session: Session, now: dt.datetime) -> list[int]:
    """Mark `sent` every sending announcement with nothing left open."""
    open_rows = select(Delivery.id).where(Delivery.announcement_id == Announcement.id,
                                          Delivery.status.in_(OPEN))
    done = list(session.scalars(select(Announcement.id).where(
        Announcement.status == "sending", ~exists(open_rows))))
    if done:
        session.execute(update(Announcement).where(Announcement.id.in_(done))
                        .values(status="sent", finished_at=now))
    return done


def milestone_drafts(session: Session | Connection, petition: Petition, before: int,
                     after: int, now: dt.datetime) -> None:
    """A total that crossed one of the petition's milestones gets a draft for staff, once
    each."""
    slug = petition.slug
    for milestone in petition.milestones:
        if before < milestone <= after:
            text = (f"Thank you! {milestone:,} people have now signed our petition "
                    f"\"{petition.title}\". Please share it: {petition.share_url}")
            insert_ignore(session, Announcement, {
                "petition_id": _petition_id(session, slug), "status": "draft", "text": text,
                "channels": [], "nations": [], "postcode_areas": [], "test_group": False,
                "milestone": milestone, "created_by": "milestone", "created_at": now},
                ["petition_id", "milestone"])


def _petition_id(session: Session | Connection, slug: str) -> int:
    pid = petition_id(session, slug)
    if pid is None:
        raise BroadcastError(f"no petition with slug {slug!r}", "petition")
    return pid


def _dialect(session: Session) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql if is_postgres(session) else sqlite


__all__ = ["ApprovalRefused", "Audience", "BroadcastError", "Job", "Preview",
           "approval_refusal", "approve", "cancel", "check_approval", "compose", "create",
           "delivery_counts", "digest", "edit", "find", "finish_complete", "is_suppressed",
           "milestone_drafts", "pause", "preview", "progress", "promote_due", "resume",
           "skip_pending_for", "start", "suppressed"]


# Twilio status callbacks: where each status may come from, so a status never moves back.
STATUS_TARGET = {"sent": "sent", "delivered": "delivered", "read": "delivered",
                 "undelivered": "failed", "failed": "failed"}
MOVES_FROM = {"sent": ("sending", "unknown"),
              "delivered": ("sending", "sent", "unknown"),
              "failed": ("sending", "sent", "unknown")}


def record_status(session: Session, provider_id: str, status: str, error_code: str | None,
                  now: dt.datetime, delivery_id: int | None = None) -> bool:
    """Apply a provider's delivery report; later reports never undo later states. With the
    delivery's id, the report also settles a send still `sending` or `unknown` here."""
    target = STATUS_TARGET.get(status)
    if target is None:
        return False
    values: dict[str, Any] = {"status": target, "updated_at": now}
    if error_code:
        values["error_code"] = error_code[:40]
    if delivery_id is not None:
        row = and_(Delivery.id == delivery_id,
                   or_(Delivery.provider_id.is_(None), Delivery.provider_id == provider_id))
        values["provider_id"] = provider_id
    else:
        row = Delivery.provider_id == provider_id
    result = session.execute(update(Delivery).where(row, Delivery.status.in_(MOVES_FROM[target]))
                             .values(**values))
    return bool(getattr(result, "rowcount", 0))
