"""Event receivers for staff (DESIGN §9): add one, test it with a ping, see how its
deliveries fare, send parked ones again, remove it.

Every rule lives here, so the console's Receivers page and the API's /webhooks behave the
same and only translate. A receiver's URL is https, or plain http to a host listed in
`[api] http_webhook_hosts`; it carries no user name or password (the signature is the
credential). It asks for a non-empty set of `events.TYPES`; a ping goes only to the
receiver being tested, whatever it asked for. Its secret is made here and shown once, to
whoever added it: it is kept only to sign bodies, and no view here returns it.

Removing a receiver deletes its deliveries, delivered or not, and the events that no other
receiver still has to hear of (a signature.created event holds a name and a postcode). A
long history is millions of rows, so it goes in two steps, neither of which keeps signing
waiting: `remove` empties the receiver's list of events in one short transaction (from
then on no event is made for it, and staff no longer see it: a live receiver always asks
for at least one type), then `clear_removed` deletes its deliveries, those still to be
posted first, and the events they leave unwanted, CLEAR_CHUNK at a time, each chunk its own
transaction, and its row last. The request that removes it clears for a moment
(REMOVE_WITHIN); the worker's retention thread finishes what is left within minutes.

Sending parked deliveries again puts them back in the outbox as new, keeping their last
answer until the worker writes the next; a parked delivery about a supporter whose later
event has already reached the receiver (or is being posted) is passed over, as it would
arrive out of order. Each change is audited by receiver id; the URL's host alone is
recorded, as a path or query may itself hold a key.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot.core.inputs import storable
from bot.infra.config import Api
from bot.shell import events
from bot.shell.staff import audit, rows_changed
from models import Event, EventDelivery, Receiver
from models.events import UNSETTLED

log = logging.getLogger("petitionbot.events")

MAX_URL = 2000          # the column's length
PARKED_SHOWN = 100      # parked deliveries listed on a receiver's page, oldest first
CLEAR_CHUNK = 5000      # deliveries of a removed receiver deleted per transaction
REMOVE_WITHIN = 2.0     # seconds the removing request spends clearing; the worker does the rest
# A later delivery about the same supporter in one of these states has overtaken a parked one.
OVERTAKEN_BY = ("claimed", "delivered")
STATUSES = ("pending", "claimed", "delivered", "failed")  # models/events.py's lifecycle
MEANINGS = {
    events.SIGNATURE_CREATED: "Someone signed a petition: the signature, with name, "
                              "postcode, channel and time.",
    events.SIGNATURE_WITHDRAWN: "A signature was withdrawn: the supporter asked, or was "
                                "erased.",
    events.SUPPORTER_ERASED: "A supporter was erased: their id only, so that your system "
                             "can erase them too.",
    events.SUBSCRIPTION_CHANGED: "A supporter started or stopped updates on a channel.",
    events.CONVERSATION_MESSAGE: "A supporter wrote to a person (the console's inbox): "
                                 "their message.",
}


class ReceiverError(ValueError):
    """A receiver cannot be added as asked; `field` names what to fix ("url", "events")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Parked:
    """A delivery that failed for a day and waits for staff to send it again."""

    delivery: int          # what send_again takes
    event: str             # the event's public id, as the receiver saw it ("evt_...")
    type: str
    created: dt.datetime   # when the event happened
    attempts: int
    last_answer: str | None
    failed_at: dt.datetime | None
    overtaken: bool = False  # a later event about its supporter reached the receiver


@dataclass(frozen=True)
class SentAgain:
    """What sending parked deliveries again did: how many are back in the outbox, and how
    many stayed parked because a later event about their supporter has already reached the
    receiver (or is being posted), so they would arrive out of order."""

    sent: int
    passed_over: int


@dataclass(frozen=True)
class View:
    """A receiver as staff see it (never its secret)."""

    id: int
    url: str
    events: tuple[str, ...]
    created_by: str
    created_at: dt.datetime
    counts: dict[str, int]              # deliveries by status, each of STATUSES
    last_answer: str | None             # the newest tried delivery's ("HTTP 503", ...)
    last_delivered_at: dt.datetime | None
    parked: tuple[Parked, ...] = field(default=())  # filled by `receiver` only

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


def check_url(url: object, api: Api) -> str:
    """The URL to post to, or ReceiverError("url") saying what is wrong with it."""
    if not isinstance(url, str) or not url.strip():
        raise ReceiverError("url", "url: give the receiver's address (https://...)")
    url = url.strip()
    if len(url) > MAX_URL:
        raise ReceiverError("url", f"url: at most {MAX_URL} characters")
    if storable(url) != url or any(c.isspace() or not c.isprintable() for c in url):
        raise ReceiverError("url", "url: holds spaces or characters a URL cannot have")
    parts = urlsplit(url)
    try:
        host, _port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, or out of range
        raise ReceiverError("url", "url: its port is not a number from 1 to 65535") from None
    if parts.scheme.lower() not in ("https", "http") or not host:
        raise ReceiverError("url", "url: an https:// address with a host name")
    if parts.username is not None or parts.password is not None:
        raise ReceiverError("url", "url: no user name or password in the address; the "
                                   "receiver checks the signature instead")
    if parts.scheme.lower() == "http" and host not in api.http_webhook_hosts:
        allowed = ", ".join(api.http_webhook_hosts) or "none"
        raise ReceiverError("url", f"url: must be https (plain http only to the hosts in "
                                   f"[api] http_webhook_hosts: {allowed})")
    return url


def check_types(types: object) -> tuple[str, ...]:
    """The event types asked for, each once, in events.TYPES' order; else
    ReceiverError("events")."""
    if not isinstance(types, list | tuple) or not types:
        raise ReceiverError("events", "events: a list of the event types to send, from: "
                                      + ", ".join(events.TYPES))
    unknown = [str(t)[:40] for t in types if t not in events.TYPES]
    if unknown:
        extra = " (a ping is sent to a receiver being tested, whatever it asked for)" \
            if events.PING in unknown else ""
        raise ReceiverError("events", f"events: not an event type: {', '.join(unknown)}; "
                                      f"choose from {', '.join(events.TYPES)}{extra}")
    return tuple(t for t in events.TYPES if t in types)


def add(session: Session, url: object, types: object, actor: str, api: Api,
        now: dt.datetime) -> tuple[View, str]:
    """A new receiver and its secret: the only time the secret is returned."""
    checked, wanted = check_url(url, api), check_types(types)
    secret = events.new_secret()
    row = Receiver(url=checked, secret=secret, events=list(wanted), created_by=actor[:254],
                   created_at=now)
    session.add(row)
    session.flush()
    made = _view(row, {}, None, None)
    audit(session, actor, "receiver.add", f"receiver:{row.id}",
          {"host": made.host, "events": list(wanted)}, now)
    return made, secret


def remove(session: Session, receiver_id: int, actor: str, now: dt.datetime) -> bool:
    """Stop making events for the receiver and hide it from staff, in the caller's (short)
    transaction; False if there is no such receiver. Its deliveries, events and row go
    afterwards (`clear_removed`)."""
    # Locked: a second removal waits here, then finds it removed. A signing waits at most
    # for this short transaction (events.record locks the receivers' rows too).
    row = session.scalar(select(Receiver).where(Receiver.id == receiver_id)
                         .with_for_update(key_share=True))
    if row is None or not row.events:
        return False
    host = _view(row, {}, None, None).host
    row.events = []
    session.flush()
    audit(session, actor, "receiver.remove", f"receiver:{receiver_id}", {"host": host}, now)
    return True


def clear_removed(sessions: sessionmaker[Session], receiver_ids: Iterable[int] | None = None,
                  until: float | None = None, chunk: int = CLEAR_CHUNK) -> bool:
    """Delete what removed receivers (those named, or all) leave behind, `chunk` deliveries
    per transaction, then each one's row; stop at `until` (a time.monotonic()) if given.
    True once nothing is left to clear."""
    with sessions() as session:
        removed = [row_id for row_id, types in session.execute(
            select(Receiver.id, Receiver.events).order_by(Receiver.id)) if not types]
    if receiver_ids is not None:
        named = set(receiver_ids)
        removed = [row_id for row_id in removed if row_id in named]
    for receiver_id in removed:
        while True:
            if until is not None and time.monotonic() >= until:
                return False
            with sessions.begin() as session:
                if not _clear_chunk(session, receiver_id, chunk):
                    # (A ping recorded as it was being removed goes with it: ON DELETE
                    # CASCADE; retention deletes its event.)
                    session.execute(delete(Receiver).where(Receiver.id == receiver_id)
                                    .execution_options(synchronize_session=False))
                    break
    return True


def start_clearing(sessions: sessionmaker[Session], receiver_id: int) -> None:
    """What the request that removed a receiver does next: clear its history for
    REMOVE_WITHIN seconds at most. The worker's retention thread does the rest, and retries
    what fails here (the receiver is removed all the same)."""
    try:
        clear_removed(sessions, [receiver_id], until=time.monotonic() + REMOVE_WITHIN)
    except SQLAlchemyError:
        log.warning("clearing removed receiver %s failed; the worker clears it", receiver_id,
                    exc_info=True)


def _clear_chunk(session: Session, receiver_id: int, chunk: int) -> int:
    """Delete up to `chunk` of a removed receiver's deliveries (those still to be posted
    first, so the worker soon stops posting them) and the events no other receiver awaits;
    how many deliveries."""
    query = (select(EventDelivery.id, EventDelivery.event_id)
             .where(EventDelivery.receiver_id == receiver_id).limit(chunk))
    found = (session.execute(query.where(EventDelivery.status.in_(UNSETTLED))).all()
             or session.execute(query).all())
    if not found:
        return 0
    ids, event_ids = sorted(d for d, _ in found), sorted({e for _, e in found})
    session.execute(delete(EventDelivery).where(EventDelivery.id.in_(ids))
                    .execution_options(synchronize_session=False))
    session.execute(delete(Event).where(
        Event.id.in_(event_ids), ~exists().where(EventDelivery.event_id == Event.id))
        .execution_options(synchronize_session=False))
    return len(found)


def ping(session: Session, receiver_id: int, actor: str, now: dt.datetime) -> str | None:
    """Record a ping for this receiver alone; its event id, or None if there is no such
    receiver. The worker posts it like any event."""
    if _live(session, receiver_id) is None:
        return None
    public_id = events.record(session.connection(), events.PING, {"receiver": receiver_id},
                              None, now, receiver_id=receiver_id)
    audit(session, actor, "receiver.ping", f"receiver:{receiver_id}", {"event": public_id},
          now)
    return public_id


def send_again(session: Session, receiver_id: int, delivery_ids: Collection[int] | None,
               actor: str, now: dt.datetime) -> SentAgain | None:
    """Put parked deliveries (those named, or all) back in the outbox as new, but those a
    later delivery about the same supporter has overtaken; None if there is no such
    receiver. Ids that are not this receiver's parked ones are passed over unsaid."""
    if _live(session, receiver_id) is None:
        return None
    parked = [EventDelivery.receiver_id == receiver_id, EventDelivery.status == "failed"]
    if delivery_ids is not None:
        if not delivery_ids:
            return SentAgain(0, 0)
        parked.append(EventDelivery.id.in_(sorted(set(delivery_ids))))
    passed_over = session.scalar(select(func.count()).select_from(EventDelivery)
                                 .where(*parked, _overtaken())) or 0
    sent = rows_changed(session.execute(update(EventDelivery).where(
        *parked, ~_overtaken()).values(
        status="pending", attempts=0, next_attempt_at=now, failed_at=None, lease_until=None,
        worker=None).execution_options(synchronize_session=False)))
    if sent:
        audit(session, actor, "receiver.retry", f"receiver:{receiver_id}",
              {"deliveries": sent, **({"passed_over": passed_over} if passed_over else {})},
              now)
    return SentAgain(sent, passed_over)


def _overtaken() -> ColumnElement[bool]:
    """A delivery whose receiver has already been sent a later event about its supporter
    (or is being sent one): posted now, it would arrive out of order. A ping (no supporter)
    is never overtaken."""
    later = aliased(EventDelivery)
    return exists().where(later.receiver_id == EventDelivery.receiver_id,
                          later.supporter_id == EventDelivery.supporter_id,
                          later.id > EventDelivery.id, later.status.in_(OVERTAKEN_BY))


def _live(session: Session, receiver_id: int) -> Receiver | None:
    """The receiver, unless there is none or it is being removed (it asks for nothing)."""
    row = session.get(Receiver, receiver_id)
    return row if row is not None and row.events else None


def receivers(session: Session) -> list[View]:
    """Every receiver, oldest first, with its deliveries' counts and last answer. Counting
    reads every delivery: give a session on models.db.long_read, which keeps no writer
    waiting meanwhile."""
    rows = [r for r in session.scalars(select(Receiver).order_by(Receiver.id)) if r.events]
    return _views(session, rows)


def receiver(session: Session, receiver_id: int, shown: int = PARKED_SHOWN) -> View | None:
    """One receiver, with its oldest `shown` parked deliveries (each saying whether a later
    delivery has overtaken it); a session on long_read, as for `receivers`."""
    row = _live(session, receiver_id)
    if row is None:
        return None
    [view] = _views(session, [row])
    parked = tuple(Parked(d.id, public_id, type_, created, d.attempts, d.last_answer,
                          d.failed_at, bool(overtaken))
                   for d, public_id, type_, created, overtaken in session.execute(
                       select(EventDelivery, Event.public_id, Event.type, Event.created_at,
                              _overtaken())
                       .join(Event, Event.id == EventDelivery.event_id)
                       .where(EventDelivery.receiver_id == receiver_id,
                              EventDelivery.status == "failed")
                       .order_by(EventDelivery.id).limit(shown)))
    return replace(view, parked=parked)


def _views(session: Session, rows: Iterable[Receiver]) -> list[View]:
    rows = list(rows)
    ids = [r.id for r in rows]
    counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    for rid, status, n in session.execute(
            select(EventDelivery.receiver_id, EventDelivery.status, func.count())
            .where(EventDelivery.receiver_id.in_(ids))
            .group_by(EventDelivery.receiver_id, EventDelivery.status)):
        counts[rid][status] = n
    delivered = dict(session.execute(  # (ix_event_deliveries_receiver holds the answer)
        select(EventDelivery.receiver_id, func.max(EventDelivery.delivered_at))
        .where(EventDelivery.receiver_id.in_(ids), EventDelivery.status == "delivered")
        .group_by(EventDelivery.receiver_id)).all())
    return [_view(r, counts[r.id], _last_answer(session, r.id), delivered.get(r.id))
            for r in rows]


def _last_answer(session: Session, receiver_id: int) -> str | None:
    """The answer to the newest delivery that has had one (a delivered one without a
    recorded answer reads "delivered")."""
    found = session.execute(
        select(EventDelivery.last_answer, EventDelivery.status)
        .where(EventDelivery.receiver_id == receiver_id,
               (EventDelivery.last_answer.is_not(None))
               | (EventDelivery.status == "delivered"))
        .order_by(EventDelivery.id.desc()).limit(1)).first()
    if found is None:
        return None
    answer, status = found
    return answer or status


def _view(row: Receiver, counts: dict[str, int], last_answer: str | None,
          last_delivered_at: dt.datetime | None) -> View:
    return View(row.id, row.url, tuple(row.events or ()), row.created_by, row.created_at,
                {s: counts.get(s, 0) for s in STATUSES}, last_answer, last_delivered_at)


__all__ = ["CLEAR_CHUNK", "MEANINGS", "PARKED_SHOWN", "REMOVE_WITHIN", "STATUSES", "Parked",
           "ReceiverError", "SentAgain", "View", "add", "check_types", "check_url",
           "clear_removed", "ping", "receiver", "receivers", "remove", "send_again",
           "start_clearing"]
