"""Events posted to receivers by the worker (DESIGN §9; bot/shell/event_delivery.py), against
a receiver on loopback (tests/fakes/receiver.py), on both databases:

- a receiver that fails its first answers (errors, a hang past the timeout, a dropped
  connection) still ends with every event exactly once after de-duplication by id, every
  signature valid, and each supporter's events in the order they happened, with two
  workers sharing the outbox;
- what each answer is recorded as ("HTTP 503", "no answer: ..."), a redirect not followed;
- the outbox's rules: per-supporter order, a cap per receiver (one receiver's backlog
  leaves the rest of a claim to the others), recovery of leases; a retry holds back the
  supporter's later deliveries, and claims read the due rows along their index;
- the courier fills a slot as soon as a post ends (its own look comes once an hour in
  those tests); a receiver trickling its answer is cut at the post's deadline, and a
  stopping courier cuts what is under way and puts its rows back;
- an erasure deletes the person's parked deliveries; on PostgreSQL a staff erasure and
  the worker's provider opt-out wait for the person's lock before writing;
- a delivery failing for a day is parked (an injected clock), and staff's "send again"
  puts it back until it is delivered;
- `--until-idle` does not wait for a delivery backing off for an hour;
- the example receiver in README.md, run as written, takes real deliveries and refuses a
  forged signature.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from prometheus_client import REGISTRY
from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.receivers import USER_AGENT, ReceiverPoster
from bot.core.conversation import Channel
from bot.core.outcomes import Job, Result, SendResult
from bot.entry.worker import BroadcastWorker
from bot.infra.clock import utcnow
from bot.infra.config import Config
from bot.shell import event_delivery, event_receivers, events
from bot.shell import supporters as supporters_shell
from bot.shell.event_delivery import Answer, Policy
from bot.shell.people import lock_supporter
from bot.shell.service import Handled, Received, Service
from models import Event, Worker
from models.db import is_postgres
from models.tables import event_deliveries, events_table, identities, supporters
from models.tables import event_receivers as receivers_table
from tests.conftest import ROOT
from tests.fakes.receiver import FakeReceiver, first_arrivals
from tests.fakes.trickle import Trickle

# Retries in hundredths of a second, so that a test sees many; the day before parking and
# the timeouts are the real ones unless a test says otherwise.
FAST = Policy(first_retry=0.02, max_retry=0.1)
QUICK = dict(connect_timeout=2.0, read_timeout=0.3)   # a "hang" answer lasts 1 s
RUN_LIMIT = 120   # seconds: a bound on a worker's run, never asserted as a duration
SECRET = "whsec_test-secret-for-the-loopback-receiver"
ADMIN = "admin@example.org"


# Helpers ----------------------------------------------------------------------------------

def add_receiver(engine: Engine, url: str, secret: str = SECRET,
                 types: tuple[str, ...] = events.TYPES) -> int:
    with engine.begin() as conn:
        return int(conn.execute(insert(receivers_table).values(
            url=url, secret=secret, events=list(types), created_by=ADMIN,
            created_at=utcnow()).returning(receivers_table.c.id)).scalar_one())


def record(engine: Engine, supporter: int | None, n: int,
           type_: str = events.SUBSCRIPTION_CHANGED, at: dt.datetime | None = None,
           data: dict[str, Any] | None = None) -> str:
    with engine.begin() as conn:
        public_id = events.record(conn, type_, data or {"supporter": supporter, "n": n},
                                  supporter, at or utcnow())
    assert public_id is not None
    return public_id


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(event_deliveries).order_by(event_deliveries.c.id)))


def run_workers(config: Config, sessions: sessionmaker[Session], poster: ReceiverPoster,
                count: int = 1, policy: Policy = FAST,
                clock: Callable[[], dt.datetime] = utcnow) -> None:
    """`count` workers with no channel to send on, each until idle, side by side."""
    runners = [BroadcastWorker(config, sessions, {}, poster=poster, events=policy,
                               clock=clock) for _ in range(count)]
    errors: list[BaseException] = []

    def run(runner: BroadcastWorker) -> None:
        try:
            runner.run(until_idle=True)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RUN_LIMIT)
    if any(thread.is_alive() for thread in threads):
        for runner in runners:
            runner.stop()
        pytest.fail(f"a worker was still running after {RUN_LIMIT}s")
    if errors:
        raise errors[0]


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("petitionbot_event_deliveries_total",
                                     {"outcome": outcome}) or 0.0


@pytest.fixture
def receiver() -> Iterator[FakeReceiver]:
    with FakeReceiver(SECRET) as fake:
        yield fake


# Failing first answers: every event once, signed, in order per supporter -------------------

def test_a_receiver_failing_its_first_answers_gets_every_event_once_in_order(
        engine: Engine, sessions: sessionmaker[Session], config: Config,
        receiver: FakeReceiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver_id = add_receiver(engine, receiver.url)
    recorded: dict[int, list[str]] = {}
    for n in range(6):
        for supporter in (101, 102, 103, 104, 105):
            recorded.setdefault(supporter, []).append(record(engine, supporter, n))
    with engine.begin() as conn:   # a ping: no supporter, so no order to keep
        ping = events.record(conn, events.PING, {"receiver": receiver_id}, None, utcnow(),
                             receiver_id=receiver_id)
    assert ping is not None
    signed = record(engine, 106, 0, events.SIGNATURE_CREATED, data={
        "petition": "sirt", "supporter": 106, "name": "Amira Okafor", "postcode": "SW1A 1AA"})
    receiver.script("500", "hang", "drop", "503", "hang", "drop", "502", "500", "drop", "429")
    retries = counted("retry")

    with caplog.at_level(logging.INFO):
        run_workers(config, sessions, ReceiverPoster(**QUICK), count=2)

    every = [i for ids in recorded.values() for i in ids] + [ping, signed]
    assert all(a.valid for a in receiver.arrivals)
    assert {a.headers["Content-Type"] for a in receiver.arrivals} == {"application/json"}
    assert {a.headers["User-Agent"] for a in receiver.arrivals} == {USER_AGENT}
    assert sorted(a.answer for a in receiver.arrivals if not a.accepted) == sorted(
        ["500", "hang", "drop", "503", "hang", "drop", "502", "500", "drop", "429"])
    once = first_arrivals(receiver.accepted())
    assert sorted(e["id"] for e in once) == sorted(every)
    for supporter, ids in recorded.items():
        assert [e["id"] for e in once if e["data"].get("supporter") == supporter] == ids
    assert {e["type"] for e in once} == {events.SUBSCRIPTION_CHANGED, events.PING,
                                         events.SIGNATURE_CREATED}

    settled = rows(engine)
    assert {r.status for r in settled} == {"delivered"}
    assert {r.last_answer for r in settled} == {"HTTP 200"}
    assert all(r.failed_at is None and r.worker is None for r in settled)
    assert sum(r.attempts for r in settled) >= len(every) + 10
    assert counted("retry") - retries >= 10
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert "event_delivery" in logged
    for private in ("Amira", "Okafor", "SW1A", SECRET):
        assert private not in logged


# What an answer is recorded as ---------------------------------------------------------------

@pytest.mark.parametrize(("answer", "words"), [
    ("503", "HTTP 503"),
    ("302", "HTTP 302"),       # a redirect is not followed: not delivered
    ("404", "HTTP 404"),
    ("hang", "no answer: timed out"),
    ("drop", "no answer: connection closed without an answer"),
])
def test_each_failed_answer_is_recorded_in_words_and_retried_later(
        engine: Engine, receiver: FakeReceiver, answer: str, words: str) -> None:
    add_receiver(engine, receiver.url)
    record(engine, 7, 0)
    receiver.script(answer)
    now = utcnow()
    with engine.begin() as conn:
        [parcel] = event_delivery.claim(conn, "w1", now, 10)
    raw = parcel.body()
    got = ReceiverPoster(**QUICK).post(parcel.url, raw, parcel.headers(raw))
    with engine.begin() as conn:
        assert event_delivery.settle(conn, parcel, got, "w1", now) == "retry"
    [row] = rows(engine)
    assert (row.status, row.attempts, row.last_answer) == ("pending", 1, words)
    assert row.failed_at == now and row.next_attempt_at > now
    assert len(receiver.arrivals) == 1 and receiver.arrivals[0].path == "/events"


def test_nobody_listening_is_no_answer(engine: Engine) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    got = ReceiverPoster(**QUICK).post(f"http://127.0.0.1:{port}/", b"{}", {})
    assert got == Answer(None, "connection refused")
    assert got.words() == "no answer: connection refused" and not got.ok


def test_retries_double_from_about_two_seconds_and_never_pass_an_hour() -> None:
    policy = Policy()
    assert [policy.retry_in(n, lambda: 0.5) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert 1.6 <= policy.retry_in(1, lambda: 0.0) < policy.retry_in(1, lambda: 0.999) <= 2.4
    assert max(policy.retry_in(n, lambda: 0.999) for n in range(1, 200)) <= 3600.0
    assert policy.retry_in(40, lambda: 0.0) == 0.8 * 3600.0


# The outbox's rules --------------------------------------------------------------------------

def test_a_supporters_next_event_waits_for_the_one_before_it_at_each_receiver(
        engine: Engine) -> None:
    crm = add_receiver(engine, "https://crm.example.org/hook")
    helpdesk = add_receiver(engine, "https://help.example.org/hook")
    first = record(engine, 1, 0)
    second = record(engine, 1, 1)
    other = record(engine, 2, 0)
    with engine.begin() as conn:
        ping = events.record(conn, events.PING, {}, None, utcnow(), receiver_id=crm)
    now = utcnow()

    def claim(at: dt.datetime) -> dict[tuple[int, str | None], event_delivery.Parcel]:
        with engine.begin() as conn:
            return {(p.receiver_id, p.event): p
                    for p in event_delivery.claim(conn, "w1", at, 50)}

    parcels = claim(now)
    assert sorted(parcels) == sorted([(crm, first), (crm, other), (crm, ping),
                                      (helpdesk, first), (helpdesk, other)])
    # The CRM failed the first event: its second waits while the first backs off; the
    # helpdesk, which took the first, is not held back.
    with engine.begin() as conn:
        for key, parcel in parcels.items():
            answer = Answer(503) if key == (crm, first) else Answer(204)
            event_delivery.settle(conn, parcel, answer, "w1", now)
    assert list(claim(now)) == [(helpdesk, second)]
    later = now + dt.timedelta(hours=2)
    assert list(claim(later)) == [(crm, first)]
    assert claim(later) == {}


def test_one_receiver_takes_at_most_its_share_of_the_posts_under_way(engine: Engine) -> None:
    slow = add_receiver(engine, "https://slow.example.org/hook")
    for supporter in range(10):
        record(engine, supporter, 0)
    policy = Policy(per_receiver=3)
    with engine.begin() as conn:
        assert len(event_delivery.claim(conn, "w1", utcnow(), 50, {}, policy)) == 3
        assert event_delivery.claim(conn, "w1", utcnow(), 50, {slow: 3}, policy) == []
        assert len(event_delivery.claim(conn, "w1", utcnow(), 50, {slow: 2}, policy)) == 1


def test_one_receivers_backlog_leaves_the_rest_of_a_claim_to_the_others(engine: Engine) -> None:
    crm = add_receiver(engine, "https://crm.example.org/hook", types=(
        events.SUBSCRIPTION_CHANGED,))
    helpdesk = add_receiver(engine, "https://help.example.org/hook", types=(
        events.CONVERSATION_MESSAGE,))
    for supporter in range(10):   # the CRM's backlog comes first
        record(engine, supporter, 0)
    for supporter in range(2):
        record(engine, supporter, 1, events.CONVERSATION_MESSAGE)
    with engine.begin() as conn:
        parcels = event_delivery.claim(conn, "w1", utcnow(), 8, {}, Policy(per_receiver=2))
    assert Counter(p.receiver_id for p in parcels) == Counter({crm: 2, helpdesk: 2})


def test_a_lease_that_ran_out_or_a_worker_gone_puts_the_row_back(engine: Engine) -> None:
    add_receiver(engine, "https://crm.example.org/hook")
    for supporter in (1, 2, 3):
        record(engine, supporter, 0)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(Worker).values(id="alive", started_at=now,
                                                     last_seen=now))
        event_delivery.claim(conn, "alive", now, 1)
        event_delivery.claim(conn, "gone", now, 1)
        [lapsed] = event_delivery.claim(conn, "alive", now, 1)
        conn.execute(update(event_deliveries).where(
            event_deliveries.c.id == lapsed.delivery_id).values(
            lease_until=now - dt.timedelta(seconds=1)))
        assert event_delivery.recover(conn, now) == 2
    assert [(r.status, r.worker) for r in rows(engine)] == [
        ("claimed", "alive"), ("pending", None), ("pending", None)]


def test_until_idle_waits_for_what_is_due_soon_not_for_an_hour_of_backoff(
        engine: Engine, sessions: sessionmaker[Session], config: Config,
        receiver: FakeReceiver) -> None:
    add_receiver(engine, receiver.url)
    record(engine, 1, 0)
    record(engine, 1, 1)   # waits behind the first
    now = utcnow()
    with engine.begin() as conn:
        assert event_delivery.due_soon(conn, now, 5.0)
        conn.execute(update(event_deliveries).where(event_deliveries.c.id == 1).values(
            next_attempt_at=now + dt.timedelta(seconds=3), attempts=3))
        assert event_delivery.due_soon(conn, now, 5.0)
        conn.execute(update(event_deliveries).where(event_deliveries.c.id == 1).values(
            next_attempt_at=now + dt.timedelta(hours=1)))
        assert not event_delivery.due_soon(conn, now, 5.0)

    run_workers(config, sessions, ReceiverPoster(**QUICK), policy=Policy())
    assert receiver.arrivals == []
    assert [r.status for r in rows(engine)] == ["pending", "pending"]


# A day of failures: parked; sent again: delivered -----------------------------------------------

def test_a_delivery_failing_for_a_day_is_parked_and_delivered_when_sent_again(
        engine: Engine, sessions: sessionmaker[Session], config: Config) -> None:
    with FakeReceiver(SECRET, default="503") as down:
        receiver_id = add_receiver(engine, down.url)
        skew = [dt.timedelta(0)]

        def clock() -> dt.datetime:
            return utcnow() + skew[0]

        fresh = record(engine, 1, 0)
        # Recorded three days ago, while no worker ran: a day of retries from its first try.
        stale = record(engine, 2, 0, at=utcnow() - dt.timedelta(days=3))
        parked = counted("failed")
        worker = threading.Thread(target=run_workers, args=(config, sessions,
                                                            ReceiverPoster(**QUICK)),
                                  kwargs={"clock": clock})
        worker.start()
        try:
            down.wait_for(lambda r: len(r.arrivals) >= 6 and min(Counter(
                a.event["id"] for a in r.arrivals).values()) >= 3 and len({
                a.event["id"] for a in r.arrivals}) == 2)
            before = rows(engine)
            assert {r.status for r in before} <= {"pending", "claimed"}
            assert all(r.failed_at is not None for r in before if r.status == "pending")
            skew[0] = dt.timedelta(days=1, minutes=1)
        finally:
            worker.join(RUN_LIMIT)
        assert not worker.is_alive()

        after = rows(engine)
        assert [(r.status, r.last_answer) for r in after] == [("failed", "HTTP 503")] * 2
        assert all(r.failed_at > utcnow() + dt.timedelta(days=1) for r in after)
        assert all(r.attempts >= 3 for r in after)
        assert counted("failed") - parked == 2
        assert not [a for a in down.arrivals if a.accepted]

        with sessions.begin() as session:
            assert event_receivers.send_again(session, receiver_id, None, ADMIN,
                                              clock()) == event_receivers.SentAgain(2, 0)
        assert [(r.status, r.failed_at) for r in rows(engine)] == [("pending", None)] * 2
        down.default = "200"
        run_workers(config, sessions, ReceiverPoster(**QUICK), clock=clock)

    assert [(r.status, r.last_answer) for r in rows(engine)] == [("delivered", "HTTP 200")] * 2
    assert sorted(e["id"] for e in down.accepted()) == sorted([fresh, stale])


# The README's example receiver, as written ------------------------------------------------------

def readme_receiver() -> str:
    """The Python block of README.md's "Connecting a CRM" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Connecting a CRM", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one Python example in README's Connecting a CRM"
    return str(blocks[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(url: str, raw: bytes, signature: str) -> int:
    request = urllib.request.Request(url, data=raw, method="POST", headers={
        "Content-Type": "application/json", events.HEADER: signature})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_the_readme_receiver_takes_real_deliveries_once_and_refuses_a_forgery(
        engine: Engine, sessions: sessionmaker[Session], config: Config,
        tmp_path: Path) -> None:
    script = tmp_path / "receiver.py"
    script.write_text(readme_receiver(), encoding="utf-8")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(PETITIONBOT_SECRET=SECRET, PORT=str(port))
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the README receiver did not start"
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/petitionbot"
        add_receiver(engine, url)
        ids = [record(engine, s, 0) for s in (1, 2, 3)]
        run_workers(config, sessions, ReceiverPoster(**QUICK))
        assert [r.status for r in rows(engine)] == ["delivered"] * 3

        genuine = events.body(ids[0], events.SUBSCRIPTION_CHANGED, utcnow(), {"n": 0})
        assert 200 <= post(url, genuine, events.signature(SECRET, genuine)) < 300  # again
        forged = events.body("evt_forged", events.SUPPORTER_ERASED, utcnow(),
                             {"supporter": 1})
        assert post(url, forged, events.signature("whsec_guessed", forged)) == 401
        assert post(url, forged, "") == 401
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    handled = [line.split() for line in out.splitlines() if line.strip()]
    assert sorted(handled) == sorted([events.SUBSCRIPTION_CHANGED, i] for i in ids), out + err


# The courier's loop: a freed slot is filled at once ---------------------------------------------

class HeldPoster:
    """A receiver in this process that answers 200, each answer held until the test lets it
    go (or at once, unheld): which events came, and how many posts were under way at most."""

    def __init__(self, held: bool = True) -> None:
        self.held = held
        self.arrived: list[str] = []
        self.under_way = 0
        self.most = 0
        self._let_go = 0
        self._cond = threading.Condition()

    def post(self, url: str, raw: bytes, headers: Mapping[str, str]) -> Answer:
        with self._cond:
            self.arrived.append(json.loads(raw)["id"])
            self.under_way += 1
            self.most = max(self.most, self.under_way)
            self._cond.notify_all()
            if self.held:
                assert self._cond.wait_for(lambda: self._let_go > 0, RUN_LIMIT)
                self._let_go -= 1
            self.under_way -= 1
            self._cond.notify_all()
        return Answer(200)

    def let_go(self, answers: int) -> None:
        with self._cond:
            self._let_go += answers
            self._cond.notify_all()

    def came(self, count: int) -> bool:
        """Whether `count` posts have arrived, waiting for them a while."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.arrived) >= count, RUN_LIMIT)


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RUN_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {RUN_LIMIT}s")
        time.sleep(0.01)


def delivered(engine: Engine) -> int:
    return sum(r.status == "delivered" for r in rows(engine))


# The courier's own look for new work comes once an hour in these tests: every claim after
# the first must be made because a post ended.
HOURLY = Policy(per_receiver=2, idle_sleep=3600.0)


def test_a_slot_freed_by_a_post_is_filled_at_once(
        engine: Engine, sessions: sessionmaker[Session]) -> None:
    add_receiver(engine, "https://crm.example.org/hook")
    recorded = [record(engine, supporter, 0) for supporter in range(1, 9)]
    poster = HeldPoster()
    courier = event_delivery.EventCourier(sessions, poster, "w1", policy=HOURLY)
    courier.start()
    try:
        assert poster.came(2)
        for count in range(3, 9):
            poster.let_go(1)
            assert poster.came(count), f"post {count} did not begin when a slot was freed"
            assert len(poster.arrived) == count and poster.under_way == 2
        poster.let_go(2)
        eventually(lambda: delivered(engine) == 8, "every event delivered")
    finally:
        courier.stop()
    assert poster.most == 2
    assert sorted(poster.arrived) == sorted(recorded)


def test_posts_that_end_while_the_courier_claims_wake_it_all_the_same(
        engine: Engine, sessions: sessionmaker[Session]) -> None:
    """A receiver that answers at once: its answers often come while the courier is still
    claiming or handing out, before it waits; none of them is missed."""
    add_receiver(engine, "https://crm.example.org/hook")
    for supporter in range(1, 41):
        record(engine, supporter, 0)
    poster = HeldPoster(held=False)
    courier = event_delivery.EventCourier(sessions, poster, "w1",
                                          policy=Policy(per_receiver=1, idle_sleep=3600.0))
    courier.start()
    try:
        eventually(lambda: delivered(engine) == 40, "every event delivered")
    finally:
        courier.stop()
    assert poster.most == 1 and len(poster.arrived) == 40


# A retry holds the supporter's later deliveries back; claims go along the due index -----------

def by_event(engine: Engine) -> dict[tuple[int, str], Any]:
    """Each delivery by (receiver, event id)."""
    with engine.connect() as conn:
        return {(r.receiver_id, r.public_id): r for r in conn.execute(
            select(event_deliveries, events_table.c.public_id)
            .join(events_table, events_table.c.id == event_deliveries.c.event_id))}


def test_a_retry_holds_back_the_supporters_later_deliveries_to_that_receiver(
        engine: Engine) -> None:
    crm = add_receiver(engine, "https://crm.example.org/hook")
    helpdesk = add_receiver(engine, "https://help.example.org/hook")
    first, second, third = (record(engine, 1, n) for n in range(3))
    other = record(engine, 2, 0)
    now = utcnow()
    with engine.begin() as conn:
        for parcel in event_delivery.claim(conn, "w1", now, 50):
            failed = (parcel.receiver_id, parcel.event) == (crm, first)
            event_delivery.settle(conn, parcel, Answer(503 if failed else 200), "w1", now)

    held = by_event(engine)
    retry_at = held[crm, first].next_attempt_at
    assert held[crm, first].status == "pending" and retry_at > now
    # Not due while the first backs off: a claim meanwhile does not look at them.
    assert [held[crm, e].next_attempt_at for e in (second, third)] == [retry_at] * 2
    assert all(held[helpdesk, e].next_attempt_at <= now for e in (second, third))
    assert held[crm, other].status == "delivered"

    def claim(at: dt.datetime) -> list[tuple[int, str]]:
        with engine.begin() as conn:
            return [(p.receiver_id, p.event) for p in event_delivery.claim(conn, "w1", at, 50)]

    assert claim(now) == [(helpdesk, second)]
    assert claim(retry_at) == [(crm, first)]   # then, in order, the ones after it
    assert claim(retry_at) == []


def plans(engine: Engine, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """How the database reads `event_deliveries` itself (not its alias `earlier`) in each
    statement: {"indexes": those it reads the table by ("" for none), "sorted": whether
    SQLite sorts afterwards}."""
    found = []
    with engine.connect() as conn:
        for statement, params in statements:
            if engine.dialect.name == "sqlite":
                lines = [r.detail for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, params)]
                scans = [index.group(1) if (index := re.search(
                    r"USING (?:COVERING )?INDEX (\w+)", line)) else "" for line in lines
                    if re.match(r"(SCAN|SEARCH) event_deliveries\b", line)]
                found.append({"indexes": set(scans),
                              "sorted": any("TEMP B-TREE" in line for line in lines)})
                continue
            [[plan]] = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params)
            nodes, scans = [plan[0]["Plan"]], []
            while nodes:
                node = nodes.pop()
                nodes += node.get("Plans", [])
                if node.get("Relation Name") == "event_deliveries" and \
                        node.get("Alias") == "event_deliveries":
                    scans.append(node.get("Index Name", ""))
            found.append({"indexes": set(scans), "sorted": False})
    return found


def test_a_claim_reads_the_rows_due_along_their_index_not_the_history(engine: Engine) -> None:
    """A long history of delivered rows and a backlog held back (a receiver was down): the
    claim, and --until-idle's look, read the pending rows due through
    ix_event_deliveries_due, in its order, not every row through the table."""
    receiver = add_receiver(engine, "https://crm.example.org/hook")
    now = utcnow()
    history, backlog = 4000, 600
    with engine.begin() as conn:
        ids = conn.execute(insert(Event).returning(events_table.c.id,
                                                          sort_by_parameter_order=True), [
            {"public_id": f"evt_{n}", "type": events.SUBSCRIPTION_CHANGED,
             "supporter_id": n % (history + backlog), "data": {}, "created_at": now}
            for n in range(history + 2 * backlog)]).scalars().all()
        conn.execute(insert(event_deliveries), [
            {"event_id": event_id, "receiver_id": receiver,
             "supporter_id": n % (history + backlog),
             "status": "delivered" if n < history else "pending", "attempts": 1,
             "next_attempt_at": now - dt.timedelta(seconds=history - n) if n < history
             else now + dt.timedelta(minutes=10), "created_at": now}
            for n, event_id in enumerate(ids)])
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
             many: bool) -> None:
        if "earlier" in statement:   # the claimable rule's NOT EXISTS
            statements.append((statement, params))

    sqlalchemy.event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.begin() as conn:
            assert event_delivery.claim(conn, "w1", now, 8) == []
            assert not event_delivery.due_soon(conn, now, 5.0)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 2
    assert plans(engine, statements) == [
        {"indexes": {"ix_event_deliveries_due"}, "sorted": False}] * 2


# A receiver that trickles its answer; a worker that stops ----------------------------------------

def bounded(job: Callable[[], Any]) -> Any:
    """What `job` returns; the test fails if it has not returned within RUN_LIMIT."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(job()), daemon=True)
    thread.start()
    thread.join(RUN_LIMIT)
    if thread.is_alive():
        pytest.fail(f"still running after {RUN_LIMIT}s")
    [value] = result
    return value


@pytest.mark.parametrize(("trickled", "answer"), [
    ("body", Answer(200)),                     # the status is what counts
    ("status", Answer(None, "timed out")),
])
def test_a_receiver_trickling_its_answer_is_cut_at_the_posts_deadline(
        trickled: str, answer: Answer) -> None:
    # Each byte comes well within the read timeout: only the deadline can end the post
    # (long before the status line is all there, when that is what trickles).
    poster = ReceiverPoster(connect_timeout=2.0, read_timeout=1.0, deadline=0.3)
    with Trickle(trickled) as receiver:
        assert bounded(lambda: poster.post(receiver.url, b"{}", {})) == answer
    poster.close()


def test_a_stopping_courier_cuts_the_posts_under_way_and_puts_their_rows_back(
        engine: Engine, sessions: sessionmaker[Session]) -> None:
    with Trickle("status") as receiver:
        add_receiver(engine, receiver.url)
        record(engine, 1, 0)
        poster = ReceiverPoster(connect_timeout=2.0, read_timeout=1.0, deadline=3600.0)
        courier = event_delivery.EventCourier(sessions, poster, "w1")
        courier.start()
        assert receiver.posted.wait(RUN_LIMIT)
        bounded(lambda: courier.stop(timeout=0.1))
    [row] = rows(engine)
    assert (row.status, row.worker, row.lease_until, row.delivered_at) == (
        "pending", None, None, None)
    assert row.last_answer in (None, "no answer: the worker stopped")


# Erasure: the person's parked deliveries go; the person's lock comes first ----------------------

_sids = itertools.count(1)


def says(service: Service, phone: str, *texts: str) -> list[Handled]:
    return [service.receive(Received(Channel.SMS, phone, text, f"SM{next(_sids):032x}",
                                     phone=phone)) for text in texts]


def signs(service: Service, engine: Engine, phone: str) -> int:
    """A person signs by SMS and takes updates; their supporter id."""
    said = says(service, phone, "Hi", "SIGN", "YES", "Amira Okafor", "SW1A 1AA", "YES", "YES")
    assert said[5].signed, [h.step for h in said]
    with engine.connect() as conn:
        supporter_id = conn.scalar(select(supporters.c.id).where(supporters.c.phone == phone))
    assert supporter_id is not None
    return int(supporter_id)


def park_everything(engine: Engine, now: dt.datetime) -> dt.datetime:
    """Fail every delivery until each is parked, as a day of failures does; the time after."""
    policy = Policy(park_after=dt.timedelta(0))
    while any(r.status != "failed" for r in rows(engine)):
        with engine.begin() as conn:
            parcels = event_delivery.claim(conn, "w1", now, 100, policy=policy)
        with engine.begin() as conn:
            for parcel in parcels:
                event_delivery.settle(conn, parcel, Answer(503), "w1", now, policy)
        now += dt.timedelta(hours=2)
    return now


def test_an_erasure_deletes_the_persons_parked_deliveries(
        engine: Engine, sessions: sessionmaker[Session], service: Service) -> None:
    """Sent again after the erasure, a parked signature.created would reach the receiver
    after supporter.erased, and could bring the person back there."""
    receiver_id = add_receiver(engine, "https://crm.example.org/hook")
    amira = signs(service, engine, "+447700900101")
    ben = signs(service, engine, "+447700900102")
    now = park_everything(engine, utcnow())
    parked = Counter(r.supporter_id for r in rows(engine))
    assert parked[amira] >= 2 and parked[ben] >= 2

    with sessions.begin() as session:
        assert supporters_shell.erase(session, amira, ADMIN, now) is not None
    left = [(r.supporter_id, r.status) for r in rows(engine)]
    assert Counter(left) == Counter({(ben, "failed"): parked[ben], (amira, "pending"): 2})
    with sessions.begin() as session:
        assert event_receivers.send_again(session, receiver_id, None, ADMIN, now) == \
            event_receivers.SentAgain(parked[ben], 0)
    with engine.connect() as conn:
        assert [t for t, in conn.execute(
            select(events_table.c.type).join(event_deliveries, event_deliveries.c.event_id
                                             == events_table.c.id)
            .where(event_deliveries.c.supporter_id == amira)
            .order_by(event_deliveries.c.id))] == [events.SIGNATURE_WITHDRAWN,
                                                   events.SUPPORTER_ERASED]


def waiting_on_a_lock(engine: Engine, done: threading.Thread, what: str) -> set[str]:
    """PostgreSQL: once a transaction waits for a row lock, the tables it has written to
    meanwhile; the test fails if `done` ends first (it never waited)."""
    with engine.connect() as watcher:
        deadline = time.monotonic() + RUN_LIMIT
        while (pid := watcher.scalar(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() LIMIT 1"))) is None:
            watcher.rollback()   # the statistics views hold still within a transaction
            if not done.is_alive():
                pytest.fail(f"{what} did not wait for the person's lock")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} was not waiting for a lock within {RUN_LIMIT}s")
            time.sleep(0.01)
        return set(watcher.scalars(text(
            "SELECT relation::regclass::text FROM pg_locks WHERE pid = :pid "
            "AND locktype = 'relation' AND mode = 'RowExclusiveLock'"), {"pid": pid}))


def event_ids(engine: Engine, supporter_id: int) -> dict[str, list[int]]:
    with engine.connect() as conn:
        found: dict[str, list[int]] = {}
        for event_id, type_ in conn.execute(
                select(events_table.c.id, events_table.c.type)
                .where(events_table.c.supporter_id == supporter_id)
                .order_by(events_table.c.id)):
            found.setdefault(type_, []).append(event_id)
        return found


def opted_out_by_provider(config: Config, sessions: sessionmaker[Session],
                          engine: Engine, phone: str) -> None:
    """The worker hears from Twilio that this number unsubscribed (21610)."""
    with engine.connect() as conn:
        identity = conn.scalar(select(identities.c.id).where(
            identities.c.channel == "sms", identities.c.address == phone))
    assert identity is not None
    job = Job(delivery_id=0, announcement_id=0, identity_id=identity, channel="sms",
              address=phone, attempts=1, last_inbound_at=None, text="")
    with engine.begin() as conn:
        BroadcastWorker(config, sessions, {}).record(
            conn, job, SendResult(Result.OPTED_OUT, error="21610"))


@pytest.mark.parametrize("change", ["staff erasure", "provider opt-out"])
def test_a_change_about_a_person_waits_for_their_lock_before_it_writes(
        engine: Engine, sessions: sessionmaker[Session], service: Service, config: Config,
        change: str) -> None:
    """PostgreSQL: while a message of theirs holds the person, a staff erasure or the
    worker's provider opt-out waits before writing anything; so its events get ids after
    the message's, and commit after them, as the claim's order rule assumes. (SQLite's one
    writer already runs them one after the other.)"""
    if not is_postgres(engine):
        pytest.skip("row locks are PostgreSQL's")
    add_receiver(engine, "https://crm.example.org/hook")
    phone = "+447700900103"
    amira = signs(service, engine, phone)
    before = max(i for ids in event_ids(engine, amira).values() for i in ids)

    def run() -> None:
        if change == "staff erasure":
            with sessions.begin() as session:
                supporters_shell.erase(session, amira, ADMIN, utcnow())
        else:
            opted_out_by_provider(config, sessions, engine, phone)

    with engine.connect() as message, message.begin():
        lock_supporter(message, amira)
        changing = threading.Thread(target=run)
        changing.start()
        try:
            assert waiting_on_a_lock(engine, changing, change) == set()
            theirs = events.record(message, events.CONVERSATION_MESSAGE, {"supporter": amira},
                                   amira, utcnow())
            assert theirs is not None
        finally:
            message.commit()
            changing.join(RUN_LIMIT)
    assert not changing.is_alive()
    made = event_ids(engine, amira)
    [message_id] = made.pop(events.CONVERSATION_MESSAGE)
    later = [i for ids in made.values() for i in ids if i > before]
    assert later and min(later) > message_id, made
