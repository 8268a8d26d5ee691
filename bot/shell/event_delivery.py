"""Posting recorded events to their receivers (DESIGN §9): the worker's courier.

The rules (models/events.py states the delivery lifecycle):
- Claim. A delivery is due once `pending` and its `next_attempt_at` has come, and may be
  claimed only when no earlier one (a lower id) to the same receiver about the same
  supporter is unsettled, so each receiver hears of one supporter in order; a delivery with
  no supporter (a ping) waits for nothing. Claims go longest due first, along the index on
  (status, next_attempt_at). A claim leases the row (`lease_until`); on PostgreSQL, SKIP
  LOCKED lets any number of workers share the outbox.
- Post. The body from events.body, signed with the receiver's secret, by a `Poster`
  (bot/channels/receivers.py: no redirects, short timeouts, a deadline for the whole post).
  No transaction is open while a receiver answers, and a body is never logged: it holds
  personal data.
- Settle. A 2xx answer: `delivered`. Any other answer, or none: `pending` again after about
  FIRST_RETRY seconds, doubling with jitter up to MAX_RETRY, and the same supporter's later
  deliveries to that receiver wait until then too (so that, while a receiver is down, each
  claim looks at the deliveries due rather than at every one held back); a delivery that
  has been failing for PARK_AFTER since its first failed attempt is parked as `failed`
  (staff send it again from the console). `failed_at` is when it first failed while it is
  being retried, when it was parked once parked, and empty once delivered. `last_answer`
  is "HTTP 503" or "no answer: <why>", never what the receiver wrote.
- Recover. A `claimed` row whose lease ran out, or whose worker stopped beating, is pending
  again and is posted again: delivery is at least once, and receivers de-duplicate by the
  event's id. A worker that stops gives posts under way STOP_WITHIN seconds, then cuts them
  and puts back what it had not settled.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from bot.infra import metrics
from bot.infra.clock import utcnow
from bot.shell import events
from models.broadcast import Worker
from models.db import is_postgres
from models.events import UNSETTLED
from models.tables import event_deliveries, event_receivers, events_table

log = logging.getLogger("petitionbot.events")

FIRST_RETRY = 2.0                     # seconds before the first retry
MAX_RETRY = 3600.0                    # the longest wait between two attempts
PARK_AFTER = dt.timedelta(days=1)     # failing this long since the first failure: parked
LEASE = 120.0                         # seconds a claim holds a row: well past one post
SLOTS = 8                             # posts at once, per worker process
PER_RECEIVER = 4                      # of which to any one receiver
IDLE_WITHIN = 5.0                     # --until-idle waits for deliveries due this soon
IDLE_SLEEP = 0.5                      # seconds between looks when nothing more is due
STOP_WITHIN = 10.0                    # seconds a stopping worker gives posts under way
CUT_GRACE = 5.0                       # and then, once they are cut, to settle
ANSWER_WORDS = 120                    # the length of event_deliveries.last_answer

_earlier = event_deliveries.alias("earlier")


@dataclass(frozen=True)
class Policy:
    """When to retry, park and give up a lease, and how many posts at once; the module's
    constants unless a test says otherwise."""

    first_retry: float = FIRST_RETRY
    max_retry: float = MAX_RETRY
    park_after: dt.timedelta = PARK_AFTER
    lease: float = LEASE
    slots: int = SLOTS
    per_receiver: int = PER_RECEIVER
    idle_within: float = IDLE_WITHIN
    idle_sleep: float = IDLE_SLEEP

    def retry_in(self, attempts: int, jitter: Callable[[], float] = random.random) -> float:
        """Seconds before the next attempt after `attempts` failed ones: doubling from
        first_retry, each within 20% either side, never past max_retry."""
        doubled = self.first_retry * 2.0 ** min(max(attempts - 1, 0), 40)
        return min(min(doubled, self.max_retry) * (0.8 + 0.4 * jitter()), self.max_retry)


@dataclass(frozen=True)
class Answer:
    """What came of one post: the HTTP status, or None and why there was no answer."""

    status: int | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def words(self) -> str:
        """For last_answer and the log: "HTTP 503" or "no answer: timed out"."""
        said = f"HTTP {self.status}" if self.status is not None else f"no answer: {self.reason}"
        return said[:ANSWER_WORDS]


class Poster(Protocol):
    """Posts one body to a receiver's URL and says what came of it; never raises."""

    def post(self, url: str, raw: bytes, headers: Mapping[str, str]) -> Answer: ...


@dataclass(frozen=True)
class Parcel:
    """A claimed delivery, with its event and receiver."""

    delivery_id: int
    receiver_id: int
    url: str
    secret: str = field(repr=False)             # signs the body; never shown
    event: str                      # the event's public id, "evt_..."
    type: str
    created: dt.datetime
    data: dict[str, Any] = field(repr=False)   # personal data: kept out of reprs and logs
    attempts: int
    failing_since: dt.datetime | None
    supporter_id: int | None = None    # whose event: their later ones wait behind it

    def body(self) -> bytes:
        return events.body(self.event, self.type, self.created, self.data)

    def headers(self, raw: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json",
                events.HEADER: events.signature(self.secret, raw)}


DEFAULT = Policy()


# The outbox's statements -------------------------------------------------------------------

def claimable(by: dt.datetime) -> ColumnElement[bool]:
    """Pending, due by `by`, and with no earlier unsettled delivery to its receiver about
    its supporter (NULL supporters compare unequal: no order among them)."""
    blocked = exists().where(_earlier.c.receiver_id == event_deliveries.c.receiver_id,
                             _earlier.c.supporter_id == event_deliveries.c.supporter_id,
                             _earlier.c.id < event_deliveries.c.id,
                             _earlier.c.status.in_(UNSETTLED))
    return and_(event_deliveries.c.status == "pending",
                event_deliveries.c.next_attempt_at <= by, ~blocked)


def claim(conn: Connection, worker: str, now: dt.datetime, limit: int,
          busy: Mapping[int, int] | None = None, policy: Policy = DEFAULT,
          look_past: bool = True) -> list[Parcel]:
    """Lease up to `limit` claimable deliveries, longest due first, no receiver's beyond
    `policy.per_receiver` posts in flight here (`busy`: receiver -> posts). In the order
    of ix_event_deliveries_due, so that the claim reads the pending rows that are due,
    however many delivered ones the table keeps. When a receiver's backlog fills the
    first rows read beyond its share, `look_past` it for the other receivers' (which reads
    all that backlog when they have none: the courier does so now and then)."""
    taken: Counter[int] = Counter(busy or {})
    full = {receiver for receiver, posts in taken.items() if posts >= policy.per_receiver}
    ids: list[int] = []
    while len(ids) < limit:
        wanted = limit - len(ids)
        query = (select(event_deliveries.c.id, event_deliveries.c.receiver_id)
                 .where(claimable(now), event_deliveries.c.receiver_id.not_in(full),
                        event_deliveries.c.id.not_in(ids))
                 .order_by(event_deliveries.c.next_attempt_at, event_deliveries.c.id)
                 .limit(wanted))
        if is_postgres(conn):
            query = query.with_for_update(skip_locked=True, of=event_deliveries)
        found = conn.execute(query).all()
        passed: set[int] = set()
        for delivery_id, receiver_id in found:
            if taken[receiver_id] < policy.per_receiver:
                taken[receiver_id] += 1
                ids.append(delivery_id)
            else:
                passed.add(receiver_id)
        if len(found) < wanted or not passed or not look_past:
            break   # nothing more is claimable, or all that was found is taken
        # A receiver's backlog filled the page beyond its share: look past it for others'.
        full |= passed
    if not ids:
        return []
    conn.execute(update(event_deliveries).where(event_deliveries.c.id.in_(ids)).values(
        status="claimed", worker=worker,
        lease_until=now + dt.timedelta(seconds=policy.lease)))
    rows = conn.execute(
        select(event_deliveries.c.id, event_deliveries.c.receiver_id, event_receivers.c.url,
               event_receivers.c.secret, events_table.c.public_id, events_table.c.type,
               events_table.c.created_at, events_table.c.data, event_deliveries.c.attempts,
               event_deliveries.c.failed_at, event_deliveries.c.supporter_id)
        .join(events_table, events_table.c.id == event_deliveries.c.event_id)
        .join(event_receivers, event_receivers.c.id == event_deliveries.c.receiver_id)
        .where(event_deliveries.c.id.in_(ids)).order_by(event_deliveries.c.id)).all()
    return [Parcel(r.id, r.receiver_id, r.url, r.secret, r.public_id, r.type, r.created_at,
                   dict(r.data or {}), r.attempts, r.failed_at, r.supporter_id) for r in rows]


def settle(conn: Connection, parcel: Parcel, answer: Answer, worker: str, now: dt.datetime,
           policy: Policy = DEFAULT) -> str:
    """Record what came of a post: "delivered", "retry" or "failed" (parked); "" when the
    row is no longer this worker's (its lease ran out, or its receiver was removed). A
    retry holds back the supporter's later deliveries to the receiver until it is due."""
    attempts = parcel.attempts + 1
    retry_at: dt.datetime | None = None
    values: dict[str, Any] = {"attempts": attempts, "last_answer": answer.words(),
                              "worker": None, "lease_until": None}
    if answer.ok:
        outcome = "delivered"
        values.update(status="delivered", delivered_at=now, failed_at=None)
    elif parcel.failing_since is not None and now - parcel.failing_since >= policy.park_after:
        outcome = "failed"
        values.update(status="failed", failed_at=now)
    else:
        outcome = "retry"
        retry_at = now + dt.timedelta(seconds=policy.retry_in(attempts))
        values.update(status="pending", failed_at=parcel.failing_since or now,
                      next_attempt_at=retry_at)
    done = conn.execute(update(event_deliveries).where(
        event_deliveries.c.id == parcel.delivery_id, event_deliveries.c.status == "claimed",
        event_deliveries.c.worker == worker).values(values))
    if done.rowcount != 1:
        return ""
    if retry_at is not None and parcel.supporter_id is not None:
        conn.execute(update(event_deliveries).where(
            event_deliveries.c.receiver_id == parcel.receiver_id,
            event_deliveries.c.supporter_id == parcel.supporter_id,
            event_deliveries.c.status == "pending",
            event_deliveries.c.id > parcel.delivery_id,
            event_deliveries.c.next_attempt_at < retry_at).values(next_attempt_at=retry_at))
    return outcome


def release(conn: Connection, worker: str) -> None:
    """Rows this worker claimed and did not post go back to the queue at once."""
    conn.execute(update(event_deliveries).where(
        event_deliveries.c.status == "claimed", event_deliveries.c.worker == worker).values(
        status="pending", worker=None, lease_until=None))


def recover(conn: Connection, now: dt.datetime) -> int:
    """Claimed rows whose lease ran out or whose worker is gone (no heartbeat row: run
    after the broadcast's recover has removed silent workers) go back to pending."""
    gone = or_(event_deliveries.c.worker.is_(None),
               event_deliveries.c.worker.not_in(select(Worker.id)))
    recovered = conn.execute(update(event_deliveries).where(
        event_deliveries.c.status == "claimed",
        or_(event_deliveries.c.lease_until < now, gone)).values(
        status="pending", worker=None, lease_until=None))
    return recovered.rowcount


def due_soon(conn: Connection, now: dt.datetime, within: float) -> bool:
    """Something is being posted, or will be claimable within `within` seconds: what
    `--until-idle` waits for. A delivery backing off for longer is left to the next run."""
    by = now + dt.timedelta(seconds=within)
    if conn.scalar(select(exists().where(event_deliveries.c.status == "claimed"))):
        return True
    # The first claimable in claim's order (an EXISTS would be planned as a scan of every
    # pending row); None when there is none.
    first = conn.scalar(select(event_deliveries.c.id).where(claimable(by)).order_by(
        event_deliveries.c.next_attempt_at, event_deliveries.c.id).limit(1))
    return first is not None


# The courier --------------------------------------------------------------------------------

class EventCourier:
    """Posts due deliveries on threads of its own, with its own database sessions, so a slow
    receiver never holds up sending on the channels: up to `policy.slots` posts at once, at
    most `policy.per_receiver` of them to one receiver, so that one receiver that hangs
    leaves room for the others. `worker` must be a beating worker's id (the Worker row):
    rows claimed under an id with no heartbeat are recovered by anyone.

    Its loop claims again as soon as a post ends (which may free a receiver's share, or let
    a supporter's next event go), and otherwise looks every `policy.idle_sleep` seconds for
    deliveries recorded or come due meanwhile."""

    def __init__(self, sessions: sessionmaker[Session], poster: Poster, worker: str,
                 clock: Callable[[], dt.datetime] = utcnow, policy: Policy = DEFAULT) -> None:
        self.sessions = sessions
        self.poster = poster
        self.worker = worker
        self.clock = clock
        self.policy = policy
        self.stopping = threading.Event()
        self._room = threading.Condition()   # notified when a post ends, and on stop
        self._posting = 0
        self._ended = 0                      # posts ended so far: what the loop waits on
        self._look_past_at = 0.0             # when a claim may next look past a backlog
        self._busy: Counter[int] = Counter()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def engine(self) -> Engine:
        engine: Engine = self.sessions.kw["bind"]
        return engine

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.policy.slots,
                                        thread_name_prefix="event-post")
        self._thread = threading.Thread(target=self._loop, name="events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_WITHIN) -> None:
        """Stop claiming; give posts under way `timeout` seconds to end, then cut them (the
        poster's `close`); and put back every row claimed here and not settled, to be posted
        again. Returns within about timeout + CUT_GRACE, whatever receivers do."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        with self._room:
            self._room.notify_all()
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._pool is not None:
            self._pool.shutdown(wait=False)   # a post not yet begun is not begun (_deliver)
        self._wait_for_posts(deadline)
        close = getattr(self.poster, "close", None)
        if close is not None:
            close()
        self._wait_for_posts(time.monotonic() + CUT_GRACE)
        try:
            with self.engine.begin() as conn:
                release(conn, self.worker)
        except Exception:
            log.warning("could not release claimed event deliveries; their lease will")

    def idle(self) -> bool:
        """Nothing being posted, and nothing due within policy.idle_within seconds."""
        with self.engine.connect() as conn:
            return not due_soon(conn, self.clock(), self.policy.idle_within)

    def _wait_for_posts(self, deadline: float) -> None:
        with self._room:
            self._room.wait_for(lambda: self._posting == 0,
                                max(deadline - time.monotonic(), 0.0))

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                with self._room:
                    self._room.wait_for(lambda: self._posting < self.policy.slots
                                        or self.stopping.is_set())
                    room, busy, ended = (self.policy.slots - self._posting, dict(self._busy),
                                         self._ended)
                if self.stopping.is_set():
                    break
                # One receiver's backlog is looked past (for the others') now and then.
                look_past = time.monotonic() >= self._look_past_at
                with self.engine.begin() as conn:
                    parcels = claim(conn, self.worker, self.clock(), room, busy, self.policy,
                                    look_past)
                if look_past:
                    self._look_past_at = time.monotonic() + self.policy.idle_sleep
                for parcel in parcels:
                    self._hand_out(parcel)
                if len(parcels) < room:
                    self._rest(ended)
            except Exception:  # a database hiccup must not end deliveries for good
                log.exception("event delivery loop error; retrying shortly")
                self.stopping.wait(5)

    def _hand_out(self, parcel: Parcel) -> None:
        with self._room:
            self._posting += 1
            self._busy[parcel.receiver_id] += 1
        assert self._pool is not None
        try:
            self._pool.submit(self._deliver, parcel)
        except RuntimeError:   # stop() has shut the pool meanwhile: the row is released
            self._done(parcel)

    def _rest(self, ended: int) -> None:
        """Nothing more can be claimed until a post ends (one that ended since `ended` was
        read counts: it is not missed) or something is recorded or comes due."""
        with self._room:
            self._room.wait_for(lambda: self._ended != ended or self.stopping.is_set(),
                                self.policy.idle_sleep)

    def _deliver(self, parcel: Parcel) -> None:
        try:
            if self.stopping.is_set():
                return  # not posted: released by stop()
            raw = parcel.body()
            started = time.perf_counter()
            try:
                answer = self.poster.post(parcel.url, raw, parcel.headers(raw))
            except Exception as error:  # a Poster should not raise; if it does, no answer
                answer = Answer(None, type(error).__name__)
            ms = round((time.perf_counter() - started) * 1000, 1)
            with self.engine.begin() as conn:
                outcome = settle(conn, parcel, answer, self.worker, self.clock(), self.policy)
            # "" when the row is no longer ours: its lease ran out, or its receiver was removed.
            self._log(parcel, answer, outcome or "gone", ms)
            if outcome:
                metrics.observe_event_delivery(outcome)
        except Exception:
            log.exception("event delivery=%s not settled; its lease will bring it back",
                          parcel.delivery_id)
        finally:
            self._done(parcel)

    def _done(self, parcel: Parcel) -> None:
        """A post has ended (or will not begin): its slot is free."""
        with self._room:
            self._posting -= 1
            self._ended += 1
            self._busy[parcel.receiver_id] -= 1
            if self._busy[parcel.receiver_id] <= 0:
                del self._busy[parcel.receiver_id]
            self._room.notify_all()

    def _log(self, parcel: Parcel, answer: Answer, outcome: str, ms: float) -> None:
        log.info("event delivery=%s receiver=%s event=%s type=%s attempt=%s answer=%r "
                 "outcome=%s ms=%s", parcel.delivery_id, parcel.receiver_id, parcel.event,
                 parcel.type, parcel.attempts + 1, answer.words(), outcome, ms, extra={
                     "event": "event_delivery", "delivery": parcel.delivery_id,
                     "receiver": parcel.receiver_id, "event_id": parcel.event,
                     "event_type": parcel.type, "answer": answer.words(),
                     "outcome": outcome, "ms": ms})


__all__ = [
    "DEFAULT",
    "Answer",
    "EventCourier",
    "Parcel",
    "Policy",
    "Poster",
    "claim",
    "claimable",
    "due_soon",
    "recover",
    "release",
    "settle",
]
