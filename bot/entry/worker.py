"""The broadcast worker: claims deliveries, sends them at each channel's rate, records
what happened. Any number of workers may run; they share the database and (through Redis)
the send rate.

Direct messages (a staff reply from the inbox, a notice to staff) share the outbox: a
delivery with no announcement, carrying its own text. They are sent as soon as claimed,
also in quiet hours (someone is answering a person who wrote, not broadcasting).

Crash safety: a delivery is `claimed` in batches, then marked `sending` in its own commit
just before the provider call, and settled in the next commit (which also marks the one
after it). A worker that disappears leaves `claimed` rows (never attempted: they go back
to pending) and at most one `sending` row per channel (in doubt: `unknown`, never resent).

Events for other systems (DESIGN §9) are posted by the worker's courier on threads of its
own (bot/shell/event_delivery.py): at least once, in order per supporter and receiver.
`--until-idle` waits for event deliveries being posted or due within a few seconds
(event_delivery.IDLE_WITHIN), not for one backing off for longer: the next run posts it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TextIO

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.receivers import ReceiverPoster
from bot.core.outcomes import Job, Result, Sender, SendResult
from bot.infra import metrics
from bot.infra.clock import utcnow
from bot.infra.config import Config
from bot.infra.pacing import LocalPacer, Pacer
from bot.shell import broadcast, event_delivery, people
from bot.shell.announcement_status import quiet_until
from models import Announcement, Delivery, Identity, Worker
from models.broadcast import DONE, OPEN
from models.db import is_postgres
from models.tables import announcements, deliveries, identities

log = logging.getLogger("petitionbot.worker")

HEARTBEAT = 2.0           # seconds between heartbeats
STALE_AFTER = 15.0        # a worker silent this long is gone; its rows are recovered
IDLE_SLEEP = 0.5
QUIET_SLEEP = 5.0         # in quiet hours, only direct messages are looked for
LOG_EVERY = 10.0          # seconds between progress lines when not in a terminal
PREPARE = 0.05            # seconds before a send's slot to start its database work


def in_quiet_hours(now: dt.datetime, config: Config) -> bool:
    """Announcements wait: the same rule the console explains (quiet_until)."""
    return quiet_until(now, config) is not None


class BroadcastWorker:
    def __init__(self, config: Config, sessions: sessionmaker[Session],
                 senders: Mapping[str, Sender], pacer: Pacer | None = None,
                 clock: Callable[[], dt.datetime] = utcnow, batch: int = 50,
                 stale_after: float = STALE_AFTER, out: TextIO | None = None,
                 poster: event_delivery.Poster | None = None,
                 events: event_delivery.Policy = event_delivery.DEFAULT) -> None:
        self.config = config
        self.sessions = sessions
        self.senders = dict(senders)
        self.pacer = pacer or LocalPacer({})
        self.clock = clock
        self.batch = batch
        self.stale_after = stale_after
        self.id = f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.out = out
        self._texts: dict[tuple[int, str], str] = {}
        self._busy: dict[str, bool] = {}
        # Events for other systems go out on threads of their own: a slow receiver must
        # not hold up the channels.
        self.courier = event_delivery.EventCourier(sessions, poster or ReceiverPoster(),
                                                   self.id, clock, events)

    # The loop ------------------------------------------------------------------------

    def run(self, until_idle: bool = False) -> None:
        """Send until stopped (or, with until_idle, until nothing is left to do)."""
        self._beat()
        threads = [threading.Thread(target=self._channel_loop, args=(channel,),
                                    name=f"send-{channel}", daemon=True)
                   for channel in self.senders]
        for thread in threads:
            thread.start()
        self.courier.start()
        printer = _Progress(self.out)
        try:
            while not self.stopping.is_set():
                self._housekeeping()
                if printer.due():  # counting is not free at a million recipients
                    printer.show(self._totals())
                if until_idle and self._idle():
                    break
                self.stopping.wait(HEARTBEAT if not until_idle else IDLE_SLEEP)
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(timeout=90)
            self.courier.stop()
            with self.sessions.begin() as session:
                self._release(session)
                session.execute(delete(Worker).where(Worker.id == self.id))
            printer.show(self._totals(), final=True)

    def stop(self) -> None:
        self.stopping.set()

    def _housekeeping(self) -> None:
        now = self.clock()
        with self.sessions.begin() as session:
            self._beat_in(session, now)
            recover(session, now, self.stale_after)
            event_delivery.recover(session.connection(), now)
            for announcement_id in broadcast.promote_due(session, self.config, now):
                log.info("announcement %s started (scheduled)", announcement_id)
            for announcement_id in broadcast.finish_complete(session, now):
                log.info("announcement %s sent", announcement_id)

    def _idle(self) -> bool:
        """Nothing left to send or wait for on the channels this worker serves, and no
        event being posted or due within a few seconds."""
        if any(self._busy.values()):
            return False
        with self.sessions() as session:
            open_rows = session.scalar(select(func.count()).select_from(Delivery).outerjoin(
                Announcement, Announcement.id == Delivery.announcement_id).where(
                WANTED, Delivery.status.in_(OPEN),
                Delivery.channel.in_(list(self.senders))))
            due = session.scalar(select(func.count()).select_from(Announcement).where(
                Announcement.status == "scheduled", Announcement.scheduled_at <= self.clock()))
            unfinished = session.scalar(select(func.count()).select_from(Announcement).where(
                Announcement.status == "sending"))
        if not open_rows and unfinished:
            self._housekeeping()  # settle the announcements that have just finished
        return not open_rows and not due and self.courier.idle()

    def _channel_loop(self, channel: str) -> None:
        while not self.stopping.is_set():
            try:
                quiet = in_quiet_hours(self.clock(), self.config)
                prepare = getattr(self.senders[channel], "prepare", None)
                if prepare is not None:
                    prepare()  # connect first (Telegram's getMe), not inside a paced send
                with self.sessions.begin() as session:
                    jobs = self.claim(session, channel, direct_only=quiet)
                self._busy[channel] = bool(jobs)
                if not jobs:
                    self.stopping.wait(QUIET_SLEEP if quiet else IDLE_SLEEP)
                    continue
                self.send_batch(channel, jobs)
            except Exception:  # a database hiccup must not end the channel's thread
                log.exception("send loop error on %s; retrying shortly", channel)
                self._busy[channel] = False
                self.stopping.wait(5)
                self._release_channel(channel)
        self._busy[channel] = False

    # Claim, send, record ---------------------------------------------------------------

    def claim(self, session: Session, channel: str, direct_only: bool = False) -> list[Job]:
        """Lease the next batch of due deliveries on `channel` (in quiet hours, with
        direct_only, only direct messages)."""
        now = self.clock()
        rate = self.config.broadcast.rates.get(channel) or 1000.0
        lease = dt.timedelta(seconds=60 + self.batch / rate * 2)
        query = (select(Delivery.id).outerjoin(Announcement,
                                               Announcement.id == Delivery.announcement_id)
                 .where(Delivery.channel == channel, Delivery.status == "pending",
                        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
                        Delivery.announcement_id.is_(None) if direct_only else WANTED)
                 # Direct messages (staff replies, notices) first: an answer must not wait
                 # behind a national announcement, nor WhatsApp's window close meanwhile.
                 .order_by(Delivery.announcement_id.is_not(None), Delivery.id)
                 .limit(self.batch))
        if is_postgres(session):
            query = query.with_for_update(skip_locked=True, of=Delivery)
        ids = list(session.scalars(query))
        if not ids:
            return []
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
            status="claimed", worker=self.id, lease_until=now + lease, updated_at=now))
        rows = session.execute(
            select(Delivery.id, Delivery.announcement_id, Delivery.identity_id, Delivery.channel,
                   Identity.address, Delivery.attempts, Identity.last_inbound_at,
                   Announcement.text, Announcement.whatsapp_content_sid,
                   Announcement.whatsapp_variables, Delivery.text.label("direct_text"))
            .join(Identity, Identity.id == Delivery.identity_id)
            .outerjoin(Announcement, Announcement.id == Delivery.announcement_id)
            .where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()
        # A direct message (no announcement: announcement_id 0 in its Job) is sent as written.
        return [Job(r.id, r.announcement_id or 0, r.identity_id, r.channel, r.address,
                    r.attempts, r.last_inbound_at,
                    r.direct_text or "" if r.announcement_id is None
                    else self._text(r.announcement_id, r.channel, r.text),
                    r.whatsapp_content_sid, r.whatsapp_variables) for r in rows]

    def _text(self, announcement_id: int, channel: str, text: str) -> str:
        key = (announcement_id, channel)
        if key not in self._texts:
            self._texts[key] = broadcast.compose(text, channel, self.config)
        return self._texts[key]

    def send_batch(self, channel: str, jobs: list[Job]) -> None:
        settled: tuple[Job, SendResult] | None = None
        for job in jobs:
            if self.stopping.is_set():
                break
            # The provider counts arrivals, so the request must leave at its slot: take the
            # slot, do the database work while waiting for it, then send on time (and, if
            # late anyway, not so soon after the sends before it: `admit`).
            delay = self.pacer.reserve(channel)
            slot = time.monotonic() + (delay or 0.0)
            _sleep_until(slot - PREPARE)
            # A Core transaction, not a Session: this runs once per message sent.
            with self.engine.begin() as connection:
                if settled:
                    self.record(connection, *settled)
                    settled = None
                started = self.begin_send(connection, job)
            if not started:
                continue
            _sleep_until(slot)
            while (wait := self.pacer.admit(channel)) > 0:
                time.sleep(wait)
            settled = (job, self._send(job))
            if settled[1].result != Result.SENT:
                # Settle it now: nothing went out (or it is in doubt), and a retry's pause
                # must hold back the next send.
                with self.engine.begin() as connection:
                    self.record(connection, *settled)
                settled = None
        with self.sessions.begin() as session:
            if settled:
                self.record(session, *settled)
            self._release(session, [job.delivery_id for job in jobs])

    @property
    def engine(self) -> Engine:
        engine: Engine = self.sessions.kw["bind"]
        return engine

    def begin_send(self, db: Session | Connection, job: Job) -> bool:
        """Mark the row `sending` (committed before the provider call), if still wanted."""
        params = {"p_id": job.delivery_id, "p_worker": self.id, "p_now": self.clock(),
                  "p_announcement": job.announcement_id, "p_identity": job.identity_id}
        connection = _connection(db)
        if connection.execute(BEGIN_SEND, params).rowcount == 1:
            job.attempts += 1
            return True
        # Paused or cancelled meanwhile (leave it), or the person said STOP (skip it).
        connection.execute(SKIP_UNREACHABLE, params)
        return False

    def _send(self, job: Job) -> SendResult:
        sender = self.senders[job.channel]
        try:
            result = sender.send(job)
            if result.result == Result.TEMPLATE:  # refused (63016), nothing went out: use it
                result = sender.send(replace(job, use_template=True))
            if result.result == Result.MOVED and result.new_address:
                self._move(job, result.new_address)
                result = sender.send(replace(job, address=result.new_address))
        except Exception as error:  # e.g. a garbled answer: it may have gone out, never resend;
            # raising would leave the row `sending` under a live worker for ever.
            log.exception("send channel=%s delivery=%s raised", job.channel, job.delivery_id)
            return SendResult(Result.UNKNOWN, error=type(error).__name__[:40])
        return result

    def _move(self, job: Job, address: str) -> None:
        with self.sessions.begin() as session:
            taken = session.scalar(select(Identity.id).where(Identity.channel == job.channel,
                                                             Identity.address == address))
            if taken is None:
                session.execute(update(Identity).where(Identity.id == job.identity_id)
                                .values(address=address))

    def record(self, db: Session | Connection, job: Job, sent: SendResult) -> None:
        """Settle one delivery from its send result, and what it tells about the person."""
        now = self.clock()
        values: dict[str, object] = {"updated_at": now, "worker": None, "lease_until": None,
                                     "error_code": sent.error}
        match sent.result:
            case Result.SENT:
                values.update(status="sent", provider_id=sent.provider_id, sent_at=now)
            case Result.RETRY if job.attempts < self.config.broadcast.max_attempts:
                wait = sent.retry_after or min(2 ** job.attempts, 300) * random.uniform(0.5, 1.5)
                values.update(status="pending",
                              next_attempt_at=now + dt.timedelta(seconds=wait))
                if sent.retry_after:
                    self.pacer.pause(job.channel, sent.retry_after)
            case Result.UNKNOWN:
                values.update(status="unknown")
            case Result.SKIPPED:
                values.update(status="skipped")
            case Result.OPTED_OUT:
                values.update(status="failed")
                _suppress(_connection(db), job.identity_id, now, opted_out=True)
            case Result.UNREACHABLE:
                values.update(status="failed")
                _suppress(_connection(db), job.identity_id, now, opted_out=False)
            case _:
                values.update(status="failed")
        values["used_template"] = sent.used_template
        connection = _connection(db)
        settled = connection.execute(SETTLE, {
            "p_id": job.delivery_id, "p_status": values["status"], "p_now": now,
            "p_provider": values.get("provider_id"), "p_sent_at": values.get("sent_at"),
            "p_next": values.get("next_attempt_at"), "p_error": sent.error,
            "p_template": sent.used_template})
        if sent.result == Result.SENT and getattr(settled, "rowcount", 1) == 0:
            # Its delivery report came first and moved it on: keep that, add what we know.
            connection.execute(update(deliveries).where(deliveries.c.id == job.delivery_id).values(
                provider_id=sent.provider_id, sent_at=now, worker=None, lease_until=None))
        status = str(values["status"])
        ms = None if sent.seconds is None else round(sent.seconds * 1000, 1)
        log.info("send channel=%s delivery=%s result=%s status=%s error=%s ms=%s", job.channel,
                 job.delivery_id, sent.result.value, status, sent.error, ms, extra={
                     "event": "send", "request_id": f"send-{job.delivery_id}-{job.attempts}",
                     "channel": job.channel, "delivery": job.delivery_id,
                     "result": sent.result.value, "outcome": status, "error": sent.error,
                     "ms": ms})
        metrics.observe_delivery(job.channel, "retry" if status == "pending" else status)
        if sent.error:
            metrics.observe_provider_error(job.channel, sent.error)

    def _release_channel(self, channel: str) -> None:
        """After an error mid-batch: the rows not yet started go back at once, rather than
        when their lease runs out (a row left `sending` is in doubt and stays so)."""
        try:
            with self.sessions.begin() as session:
                session.execute(update(Delivery).where(
                    Delivery.status == "claimed", Delivery.worker == self.id,
                    Delivery.channel == channel).values(
                    status="pending", worker=None, lease_until=None))
        except Exception:
            log.warning("could not release claimed %s deliveries; their lease will", channel)

    def _release(self, session: Session, ids: list[int] | None = None) -> None:
        """Claimed rows this worker did not start go back to the queue."""
        query = update(Delivery).where(Delivery.status == "claimed", Delivery.worker == self.id)
        if ids is not None:
            query = query.where(Delivery.id.in_(ids))
        session.execute(query.values(status="pending", worker=None, lease_until=None))

    # Heartbeat and progress -------------------------------------------------------------

    def _beat(self) -> None:
        with self.sessions.begin() as session:
            self._beat_in(session, self.clock())

    def _beat_in(self, session: Session, now: dt.datetime) -> None:
        updated = session.execute(update(Worker).where(Worker.id == self.id)
                                  .values(last_seen=now))
        if getattr(updated, "rowcount", 0) == 0:
            session.add(Worker(id=self.id, started_at=now, last_seen=now))

    def _totals(self) -> dict[str, int]:
        with self.sessions() as session:
            counts = dict(session.execute(
                select(Delivery.status, func.count()).join(
                    Announcement, Announcement.id == Delivery.announcement_id)
                .where(Announcement.status.in_(("sending", "paused")))
                .group_by(Delivery.status)).all())
        return {k: int(v) for k, v in counts.items()}


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


_MINE = and_(deliveries.c.id == bindparam("p_id"), deliveries.c.status == "claimed",
             deliveries.c.worker == bindparam("p_worker"))
# Checked just before each send, so a STOP or a number put on the suppression list
# (broadcast.suppressed) meanwhile stops what was queued before it.
_REACHABLE = exists().where(identities.c.id == bindparam("p_identity"),
                            identities.c.opted_out_at.is_(None),
                            identities.c.unreachable_at.is_(None),
                            ~broadcast.suppressed())
_SUPPRESSED = exists().where(identities.c.id == bindparam("p_identity"), broadcast.suppressed())
# Built once: these run for every message a worker sends.
BEGIN_SEND = update(deliveries).where(
    _MINE, _REACHABLE, or_(deliveries.c.announcement_id.is_(None),
                           exists().where(announcements.c.id == bindparam("p_announcement"),
                                          announcements.c.status == "sending"))).values(
    status="sending", attempts=deliveries.c.attempts + 1, updated_at=bindparam("p_now"))
SKIP_UNREACHABLE = update(deliveries).where(_MINE, ~_REACHABLE).values(
    status="skipped", error_code=case((_SUPPRESSED, "suppressed"), else_="opted_out"),
    updated_at=bindparam("p_now"))
SETTLE = update(deliveries).where(
    deliveries.c.id == bindparam("p_id"), deliveries.c.status == "sending").values(
    status=bindparam("p_status"), provider_id=bindparam("p_provider"),
    sent_at=bindparam("p_sent_at"), next_attempt_at=bindparam("p_next"),
    error_code=bindparam("p_error"), used_template=bindparam("p_template"),
    updated_at=bindparam("p_now"), worker=None, lease_until=None)


# A delivery to send: a direct message, or one of an announcement that is sending.
WANTED = or_(Delivery.announcement_id.is_(None), Announcement.status == "sending")


def recover(session: Session, now: dt.datetime, stale_after: float = STALE_AFTER) -> None:
    """Rows held by workers that stopped beating: claimed -> pending, sending -> unknown."""
    cutoff = now - dt.timedelta(seconds=stale_after)
    session.execute(delete(Worker).where(Worker.last_seen < cutoff))
    alive = select(Worker.id)
    orphaned = or_(Delivery.worker.is_(None), Delivery.worker.not_in(alive))
    session.execute(update(Delivery).where(
        Delivery.status == "claimed", or_(orphaned, Delivery.lease_until < now))
        .values(status="pending", worker=None, lease_until=None, updated_at=now))
    session.execute(update(Delivery).where(Delivery.status == "sending", orphaned)
                    .values(status="unknown", error_code="worker_lost", worker=None,
                            updated_at=now))


def _connection(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _suppress(connection: Connection, identity_id: int, now: dt.datetime,
              opted_out: bool) -> None:
    """The provider says: unsubscribed (21610: its subscriptions end, and other systems
    hear so) or unreachable (blocked the bot). The person's lock is taken first, before
    anything is written (`record` settles the delivery after this), as a message of
    theirs takes it: their events commit in the order of their ids."""
    _lock_person(connection, identity_id)
    column = identities.c.opted_out_at if opted_out else identities.c.unreachable_at
    connection.execute(update(identities).where(identities.c.id == identity_id,
                                                column.is_(None)).values({column: now}))
    if opted_out:
        people.end_subscriptions(connection, identity_id, "provider_opt_out", now)
    broadcast.skip_pending_for(connection, identity_id,
                               "opted_out" if opted_out else "unreachable", now)


def _lock_person(connection: Connection, identity_id: int) -> None:
    """Hold the person behind this identity (people.lock_supporter), who may change while
    their lock is awaited (a merge moves the identity): the one it belongs to once held."""
    if not is_postgres(connection):
        return
    held: int | None = None
    while (person := connection.scalar(select(identities.c.supporter_id).where(
            identities.c.id == identity_id))) not in (None, held):
        people.lock_supporter(connection, person)
        held = person


class _Progress:
    """A progress line in a terminal; periodic log lines otherwise."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self.tty = bool(out is not None and out.isatty())
        self.last_time = time.monotonic()
        self.last_done = -1
        self.last_log = 0.0

    def due(self) -> bool:
        return self.tty or time.monotonic() - self.last_log >= LOG_EVERY

    def show(self, counts: dict[str, int], final: bool = False) -> None:
        done = sum(counts.get(s, 0) for s in DONE)
        remaining = sum(counts.get(s, 0) for s in OPEN)
        now = time.monotonic()
        rate = max(done - max(self.last_done, 0), 0) / max(now - self.last_time, 1e-6)
        left = f"{remaining / rate:,.0f}s" if rate > 0 and remaining else "-"
        line = (f"sent {counts.get('sent', 0) + counts.get('delivered', 0):,}  "
                f"failed {counts.get('failed', 0):,}  skipped {counts.get('skipped', 0):,}  "
                f"unknown {counts.get('unknown', 0):,}  remaining {remaining:,}  "
                f"{rate:,.1f}/s  left {left}")
        if self.tty and self.out is not None:
            self.out.write("\r" + line.ljust(100) + ("\n" if final else ""))
            self.out.flush()
        elif done != self.last_done and (final or now - self.last_log >= LOG_EVERY):
            log.info("progress %s", line)
        self.last_log = now
        self.last_done, self.last_time = done, now


def stdout_if_tty() -> TextIO | None:
    return sys.stdout if sys.stdout.isatty() else None
