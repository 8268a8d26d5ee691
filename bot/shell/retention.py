"""Retention: config.toml `[retention]`, enforced daily by the worker and by
`petitionbot retention run [--dry-run]`.

- Inbound message text is blanked after `inbound_text_days`; the row (channel and provider
  message id) stays, so a provider's late retry still finds its key and has no effect.
- A conversation left unfinished for `unfinished_conversation_days` loses what it collected
  (name, postcode, country, a voice draft) and starts again; someone who never signed and
  holds nothing else here (no signature, no subscription) is then forgotten: their phone
  number or chat id, consent records and message links go.
- The signatures of a petition closed `closed_petition_months` ago are anonymised: the name
  goes, the postcode is cut to its district, the consent record and referral go; the
  petition, number, channel, nation, postcode area and date stay, so every count stays.
  Whoever is then left with nothing on a live petition is forgotten as above; a signature
  of someone still active elsewhere is moved to a new, empty supporter record. Its
  subscriptions go, and other systems hear so (`subscription.changed`, reason
  "petition_closed").
- A closed staff-inbox conversation is deleted `inbox_days` after it was closed (the
  supporter's words, staff replies and notes, follow-ups), and one left open when nothing
  was said in it for `inbox_days`; someone with an open one is not forgotten for being
  idle meanwhile. Notices to staff (a link, nothing personal) go once sent and
  `inbound_text_days` old.
- An event for other systems (bot/shell/events.py) is deleted, with its deliveries, once
  it is `inbound_text_days` old (the message texts' period: a `conversation.message`
  carries a supporter's words) and each of its deliveries is settled: delivered, or
  parked as failed after a day of retries. One still waiting to be delivered stays.
  They can be hundreds of thousands, so they go first, EVENT_CHUNK per transaction, each
  one short: a signing that records an event never waits for the run.
  With the shipped periods an event goes long before what it copied (a name stays until
  months after its petition closed, inbox words `inbox_days`); erasure scrubs events at
  once (bot/shell/people.erase_supporter).
- The suppression list is never purged: a forgotten person who said STOP stays as a bare
  address (channel, address, when), so they are never messaged again.

Apart from those events, one run is one transaction, and it writes one audit_log entry
saying what it removed (the events included); `--dry-run` does the same work and rolls it
back, and only counts the events. The worker's daily thread also finishes removing event
receivers (bot/shell/event_receivers.clear_removed) at each of its checks.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import logging
import threading
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import State, Step
from bot.infra.clock import utcnow
from bot.infra.config import Config
from bot.shell import event_receivers, events
from bot.shell.petition_content import live_petitions
from models import (
    Announcement,
    AuditEntry,
    ConsentRecord,
    Conversation,
    Delivery,
    Event,
    EventDelivery,
    Identity,
    InboundMessage,
    InboxConversation,
    Petition,
    RateWindow,
    Receiver,
    Signature,
    Subscription,
    Supporter,
    Voice,
)
from models.db import is_postgres
from models.events import SETTLED

log = logging.getLogger("petitionbot.retention")

ACTION = "retention.run"
PERIOD = dt.timedelta(days=1)
CHECK_EVERY = 600.0          # seconds between the worker's "is a run due?" checks
LOCK_KEY = 0x7065746974      # PostgreSQL advisory lock: one run at a time, across workers
CHUNK = 500                  # ids per IN (...) list
EVENT_CHUNK = 5000           # expired events deleted per transaction
# Steps in which a conversation may hold what it collected for a signature or a voice.
COLLECTING = tuple(s.value for s in Step if s not in (Step.NEW, Step.MENU, Step.SIGNED,
                                                       Step.UPDATES))
COLLECTED = ("name", "postcode", "country", "voice")


@dataclass
class Report:
    """What one run removed (or, in a dry run, would have removed)."""

    inbound_texts: int = 0          # message texts blanked
    conversations: int = 0          # unfinished conversations cleared
    signatures: int = 0             # signatures anonymised
    people: int = 0                 # people forgotten (contact details removed)
    subscriptions: int = 0          # subscriptions to closed petitions removed
    deliveries: int = 0             # delivery records of those people / petitions removed
    voices: int = 0                 # unpublished voices removed
    inbox_conversations: int = 0    # closed staff-inbox conversations removed
    events: int = 0                 # events for other systems, delivered or failed, removed
    suppressed: int = 0             # addresses on the suppression list (kept)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        return [
            f"Retention {verb}: "
            + ("(dry run: nothing was changed)" if self.dry_run else ""),
            f"  message texts blanked              {self.inbound_texts:>8,}",
            f"  unfinished conversations cleared   {self.conversations:>8,}",
            f"  signatures anonymised              {self.signatures:>8,}",
            f"  people forgotten                   {self.people:>8,}",
            f"  subscriptions removed              {self.subscriptions:>8,}",
            f"  delivery records removed           {self.deliveries:>8,}",
            f"  unpublished voices removed         {self.voices:>8,}",
            f"  inbox conversations removed        {self.inbox_conversations:>8,}",
            f"  events removed                     {self.events:>8,}",
            f"Suppression list kept: {self.suppressed:,} address(es).",
        ]


def add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return day.replace(year=year, month=month,
                       day=min(day.day, calendar.monthrange(year, month)[1]))


def expired_petitions(session: Session, config: Config, now: dt.datetime) -> list[str]:
    """Slugs of petitions closed at least `closed_petition_months` ago (local date), as
    their live content says (staff close petitions in the console)."""
    today = now.astimezone(zoneinfo.ZoneInfo(config.broadcast.timezone)).date()
    months = config.retention.closed_petition_months
    return [p.slug for p in live_petitions(session, config)
            if p.closed is not None and add_months(p.closed, months) <= today]


REPLIES_KEPT = dt.timedelta(days=1)


# One run -------------------------------------------------------------------------------------

def purge(session: Session, config: Config, now: dt.datetime) -> Report:
    """Apply every retention rule at `now` but the expired events' (`purge_events`), in the
    caller's transaction."""
    report = Report()
    kept = config.retention
    cutoff = _text_cutoff(config, now)
    report.inbound_texts = _count(session.execute(
        update(InboundMessage).where(InboundMessage.body.is_not(None),
                                     InboundMessage.received_at < cutoff).values(body=None)))
    # The answers kept for a provider's retry (which comes within minutes) may repeat a
    # name or a postcode: they go after a day, whatever inbound_text_days says.
    session.execute(update(InboundMessage).where(
        InboundMessage.replies.is_not(None),
        InboundMessage.received_at < now - REPLIES_KEPT).values(replies=None))
    # Rate windows (login throttle, an erased person's reply budget) count nothing after
    # a day; their keys are keyed hashes, but nothing is kept longer than it is used.
    session.execute(delete(RateWindow).where(RateWindow.updated_at < now - REPLIES_KEPT))
    # A conversation nobody closed goes too once nothing was said in it for as long.
    inbox_cutoff = now - dt.timedelta(days=kept.inbox_days)
    report.inbox_conversations = _count(session.execute(delete(InboxConversation).where(
        or_(and_(InboxConversation.status == "closed",
                 InboxConversation.closed_at < inbox_cutoff),
            InboxConversation.last_message_at < inbox_cutoff))))
    report.deliveries += _count(session.execute(delete(Delivery).where(
        Delivery.announcement_id.is_(None), Delivery.inbox_message_id.is_(None),
        Delivery.status.not_in(("pending", "claimed", "sending")),
        Delivery.created_at < cutoff)))
    slugs = expired_petitions(session, config, now)
    if slugs:
        _anonymise(session, list(session.scalars(
            select(Petition.id).where(Petition.slug.in_(slugs)))), report, now)
    idle = now - dt.timedelta(days=kept.unfinished_conversation_days)
    report.conversations = _clear_conversations(session, idle)
    never_signed = list(session.scalars(select(Supporter.id).where(
        Supporter.created_at < idle,
        ~exists().where(Signature.supporter_id == Supporter.id),
        ~exists().where(Identity.supporter_id == Supporter.id,
                        func.coalesce(Identity.last_inbound_at, Identity.created_at) >= idle),
        ~exists().where(Subscription.identity_id == Identity.id,
                        Identity.supporter_id == Supporter.id),
        ~exists().where(InboxConversation.supporter_id == Supporter.id,
                        InboxConversation.status == "open"))))
    _forget(session, never_signed, report)
    report.suppressed = session.scalar(select(func.count()).select_from(Identity).where(
        Identity.opted_out_at.is_not(None))) or 0
    return report


def purge_events(sessions: sessionmaker[Session], cutoff: dt.datetime,
                 chunk: int = EVENT_CHUNK) -> int:
    """Delete the events made before `cutoff` whose deliveries are all settled, `chunk` per
    transaction; how many."""
    gone = 0
    while True:
        with sessions.begin() as session:
            ids = list(session.scalars(select(Event.id).where(_expired(cutoff)).limit(chunk)))
            if not ids:
                return gone
            # (Checked again: one may have been sent again meanwhile. Their deliveries go
            # with them: ON DELETE CASCADE.)
            gone += _count(session.execute(
                delete(Event).where(Event.id.in_(ids), _expired(cutoff))
                .execution_options(synchronize_session=False)))


def _expired(cutoff: dt.datetime) -> ColumnElement[bool]:
    return and_(Event.created_at < cutoff,
                ~exists().where(EventDelivery.event_id == Event.id,
                                EventDelivery.status.not_in(SETTLED)))


def _text_cutoff(config: Config, now: dt.datetime) -> dt.datetime:
    """Inbound texts, and events, made before this go."""
    return now - dt.timedelta(days=config.retention.inbound_text_days)


def run(sessions: sessionmaker[Session], config: Config, now: dt.datetime,
        actor: str = "retention", dry_run: bool = False) -> Report:
    """One run, audited: the expired events first, a chunk per transaction, then the rest
    in one transaction; a dry run counts the events and rolls the rest back."""
    cutoff = _text_cutoff(config, now)
    gone = 0 if dry_run else purge_events(sessions, cutoff, EVENT_CHUNK)
    with sessions() as session:
        transaction = session.begin()
        try:
            report = purge(session, config, now)
            report.events = gone if not dry_run else session.scalar(
                select(func.count()).select_from(Event).where(_expired(cutoff))) or 0
            report.dry_run = dry_run
            if dry_run:
                transaction.rollback()
            else:
                audit(session, report, actor, now)
                transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise
    _log(report)
    return report


def run_if_due(sessions: sessionmaker[Session], config: Config, now: dt.datetime,
               actor: str = "worker") -> Report | None:
    """Run unless a run finished within the last day (or another worker is running one)."""
    with sessions() as session:  # a first look: the events go before the run's transaction
        if not _due(session, now):
            return None
    gone = purge_events(sessions, _text_cutoff(config, now), EVENT_CHUNK)
    with sessions.begin() as session:
        if is_postgres(session) and not session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY}):
            return None
        if not _due(session, now):
            return None
        report = purge(session, config, now)
        report.events = gone
        audit(session, report, actor, now)
    _log(report)
    return report


def _due(session: Session, now: dt.datetime) -> bool:
    last = session.scalar(select(func.max(AuditEntry.at)).where(AuditEntry.action == ACTION))
    return last is None or now - last >= PERIOD


def audit(session: Session, report: Report, actor: str, now: dt.datetime) -> None:
    detail = {k: v for k, v in report.as_dict().items() if k != "dry_run"}
    session.add(AuditEntry(at=now, actor=actor[:254], action=ACTION, target=None,
                           detail=detail))


def _log(report: Report) -> None:
    fields = {k: v for k, v in report.as_dict().items()}
    log.info("retention %s", " ".join(f"{k}={v}" for k, v in fields.items()),
             extra={"event": "retention", **{f"removed_{k}": v for k, v in fields.items()
                                              if k not in ("dry_run", "suppressed")}})


# The rules -------------------------------------------------------------------------------

def _clear_conversations(session: Session, idle: dt.datetime) -> int:
    holding = [Conversation.data[name].as_string() != "" for name in COLLECTED]
    rows = session.execute(select(Conversation.identity_id, Conversation.data).where(
        Conversation.updated_at < idle,
        or_(Conversation.step.in_(COLLECTING), *holding))).all()
    for identity_id, data in rows:
        blank = State(petition=str((data or {}).get("petition", "")))
        fresh = {k: v for k, v in dataclasses.asdict(blank).items() if k != "step"}
        fresh["options"] = list(blank.options)
        # The version moves on, so a message being handled meanwhile retries on fresh state.
        session.execute(update(Conversation).where(Conversation.identity_id == identity_id)
                        .values(step=blank.step.value, data=fresh,
                                version=Conversation.version + 1))
    return len(rows)


def _anonymise(session: Session, petition_ids: list[int], report: Report,
               now: dt.datetime) -> None:
    closed = Signature.petition_id.in_(petition_ids)
    signers = set(session.scalars(select(Signature.supporter_id).where(closed,
                                                                       Signature.name != "")))
    # Still active elsewhere: a signature or a subscription on a petition that is not closed.
    live = set(session.scalars(select(Signature.supporter_id).where(
        Signature.supporter_id.in_(signers), ~Signature.petition_id.in_(petition_ids))))
    live |= set(session.scalars(select(Identity.supporter_id).join(
        Subscription, Subscription.identity_id == Identity.id).where(
        Identity.supporter_id.in_(signers), ~Subscription.petition_id.in_(petition_ids))))
    for signature_id, signed_at in session.execute(select(Signature.id, Signature.signed_at)
                                                   .where(closed, Signature.name != "",
                                                          Signature.supporter_id.in_(live))):
        # A signature of someone we keep must not lead back to them: give it its own
        # empty supporter (signatures.supporter_id cannot be empty).
        stub = _new_stub(session, signed_at)
        session.execute(update(Signature).where(Signature.id == signature_id)
                        .values(supporter_id=stub))
    report.signatures = _count(session.execute(
        update(Signature).where(closed, Signature.name != "").values(
            name="", postcode=_district(session), consent_id=None, referral=None)))
    _end_subscriptions(session, petition_ids, now)
    report.subscriptions += _count(session.execute(
        delete(Subscription).where(Subscription.petition_id.in_(petition_ids))))
    report.voices += _settle_voices(session, Voice.petition_id.in_(petition_ids))
    _delete_consent(session, ConsentRecord.petition_id.in_(petition_ids))
    announcements = select(Announcement.id).where(Announcement.petition_id.in_(petition_ids))
    report.deliveries += _count(session.execute(delete(Delivery).where(
        Delivery.announcement_id.in_(announcements),
        Delivery.status.not_in(("pending", "claimed", "sending")))))
    _forget(session, sorted(signers - live), report)


def _end_subscriptions(session: Session, petition_ids: list[int], now: dt.datetime) -> None:
    """Other systems hear that updates about these petitions ended (reason
    "petition_closed"), before their subscriptions go: in a few statements, however many
    (events.record_many), and none when no receiver asked."""
    if not any(events.SUBSCRIPTION_CHANGED in (types or [])
               for types in session.scalars(select(Receiver.events))):
        return
    ended = [(events.subscription_data(supporter_id, slug, channel, False,
                                       "petition_closed"), supporter_id)
             for slug, channel, supporter_id in session.execute(
                 select(Petition.slug, Identity.channel, Identity.supporter_id)
                 .join(Subscription, Subscription.petition_id == Petition.id)
                 .join(Identity, Identity.id == Subscription.identity_id)
                 .where(Petition.id.in_(petition_ids)).order_by(Subscription.id))]
    events.record_many(session.connection(), events.SUBSCRIPTION_CHANGED, ended, now)


def _new_stub(session: Session, created_at: dt.datetime) -> int:
    supporter = Supporter(phone=None, created_at=created_at)
    session.add(supporter)
    session.flush()
    return supporter.id


def _district(session: Session) -> ColumnElement[Any]:
    """The postcode's outward code ("SW1A 1AA" -> "SW1A", "BFPO 1234" -> "BFPO")."""
    if is_postgres(session):
        return func.split_part(Signature.postcode, " ", 1)
    space = func.instr(Signature.postcode, " ")
    return case((space > 0, func.substr(Signature.postcode, 1, space - 1)),
                else_=Signature.postcode)


def _settle_voices(session: Session, which: ColumnElement[bool]) -> int:
    """Published voices stay, with no link to their author; the others go."""
    published = (Voice.status == "approved") & Voice.publish_consent.is_(True)
    session.execute(update(Voice).where(which, published)
                    .values(supporter_id=None, consent_id=None))
    return _count(session.execute(delete(Voice).where(which, ~published)))


def _forget(session: Session, supporter_ids: Sequence[int], report: Report) -> None:
    """Remove people's contact details and everything linking to them; their anonymised
    signatures (if any) stay, on a supporter row that no longer holds a phone number."""
    for chunk in _chunks(supporter_ids):
        people = Identity.supporter_id.in_(chunk)
        identity_ids = list(session.scalars(select(Identity.id).where(people)))
        for ids in _chunks(identity_ids):
            session.execute(delete(Subscription).where(Subscription.identity_id.in_(ids)))
            session.execute(delete(Conversation).where(Conversation.identity_id.in_(ids)))
            session.execute(update(InboundMessage).where(InboundMessage.identity_id.in_(ids))
                            .values(identity_id=None, body=None, replies=None))
            report.deliveries += _count(session.execute(
                delete(Delivery).where(Delivery.identity_id.in_(ids))))
        report.voices += _settle_voices(session, Voice.supporter_id.in_(chunk))
        _delete_consent(session, ConsentRecord.supporter_id.in_(chunk))
        # The suppression list: an address that said STOP stays, bare.
        session.execute(update(Identity).where(people, Identity.opted_out_at.is_not(None))
                        .values(supporter_id=None, last_inbound_at=None, unreachable_at=None))
        session.execute(delete(Identity).where(people))
        signed = exists().where(Signature.supporter_id == Supporter.id)
        session.execute(update(Supporter).where(Supporter.id.in_(chunk), signed)
                        .values(phone=None))
        session.execute(delete(Supporter).where(Supporter.id.in_(chunk), ~signed))
        report.people += len(chunk)


def _delete_consent(session: Session, which: ColumnElement[bool]) -> None:
    """Delete consent records, first letting go of whatever still points at them."""
    consent = select(ConsentRecord.id).where(which)
    for model in (Signature, Subscription, Voice):
        session.execute(update(model).where(model.consent_id.in_(consent))
                        .values(consent_id=None))
    session.execute(delete(ConsentRecord).where(which))


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start:start + CHUNK])


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# Daily, in the worker ----------------------------------------------------------------------

class DailyRetention:
    """Checks every few minutes whether a day has passed since the last run (any worker's,
    or the CLI's), and runs then; at each check it also deletes what removed event
    receivers left (the removing request clears only for a moment). One thread, stopped
    with the worker."""

    def __init__(self, config: Config, sessions: sessionmaker[Session],
                 clock: Callable[[], dt.datetime] = utcnow, every: float = CHECK_EVERY) -> None:
        self.config = config
        self.sessions = sessions
        self.clock = clock
        self.every = every
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def check(self) -> None:
        """One check: what removed receivers left, then the run if it is due."""
        try:
            event_receivers.clear_removed(self.sessions)
        except Exception:  # a database hiccup: the next check tries again
            log.exception("clearing removed event receivers failed; it will be tried again")
        try:
            run_if_due(self.sessions, self.config, self.clock())
        except Exception:
            log.exception("retention run failed; it will be tried again")

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.check()
            self.stopping.wait(self.every)
