"""Broadcast benchmark (issue #4): an announcement to 100,000 generated supporters.

    .venv/bin/python bench/broadcast.py            # about five minutes
    .venv/bin/python bench/broadcast.py --quick    # about a minute (100,000 only; --million
                                                   # adds the 1,000,000 figure)
    .venv/bin/python bench/broadcast.py --profile  # also: where a send's time goes

For each database (SQLite in a temporary folder, then PostgreSQL: the `bench_broadcast`
database's public schema dropped and recreated) it
1. generates the audience set-based (generate_series on PostgreSQL, a recursive CTE on
   SQLite): supporters who signed and asked for updates, spread over SMS (50%), Telegram
   (30%) and WhatsApp (20%), plus 2% more who said STOP or became unreachable;
2. times the outbox: `broadcast.create` + `broadcast.approve` (-> `start`: one INSERT ...
   SELECT with the audience's filters, the frequency cap, the count), committed; baseline:
   a plain INSERT INTO ... SELECT of the same number of rows into a scratch table with the
   same columns and no constraints;
3. sends with rate limits off through the real `BroadcastWorker` (claim, `sending` commit,
   record; its main loop's heartbeat and progress too; production logging to a file),
   against an in-process sender that returns SENT at once; baselines: the same sender in a
   bare loop (no database), and one UPDATE + COMMIT per row (the database's commit rate);
   SQL statements and commits per message are counted on the engine;
4. the same against the fake Twilio REST server on loopback (its own process), SMS and
   WhatsApp; baseline: TwilioSender in a bare loop against the same server;
5. achieved rate against a configured 30/s (one channel, in-process sender); baseline: the
   pacer alone; also the most sends in any one-second window;
6. peak memory (ru_maxrss) of a child process that only runs a worker (the three channels,
   in-process sender) for a few seconds, at 100,000 and at 1,000,000 recipients (the rest
   generated set-based, a second announcement); baseline: an idle child that imports the same
   modules and connects.
Goals (issue #4): outbox for 100,000 under 5 s; at least 1,000 sends/s per worker against
the in-process sender; achieved/configured rate between 0.95 and 1.00; peak memory under
200 MB at either size. Only loopback addresses are used; every wait is bounded.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import datetime as dt
import io
import json
import logging
import multiprocessing as mp
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databases import fresh_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_URL = "postgresql+psycopg://127.0.0.1:5432/bench_broadcast"
TEXT = "Thank you for signing! NHS England has agreed to meet us next week."
CONFIGURED_RATE = 30.0
BATCH = 50  # `petitionbot worker --batch` default
GOAL_OUTBOX_S = 5.0
GOAL_SENDS = 1000.0
GOAL_RATIO = (0.95, 1.00)
GOAL_MEMORY_MB = 200.0
SID = "AC" + "0" * 32
TOKEN = "test-auth-token-0123456789abcdef"


@dataclass(frozen=True)
class Plan:
    audience: int          # recipients of the announcement
    big: int               # recipients for the second memory figure
    sends: int             # deliveries sent against the in-process sender
    commits: int           # rows for the raw commit-rate baseline
    http_sends: int        # deliveries sent against the loopback fake
    paced_seconds: float   # length of the configured-rate window
    memory_seconds: float  # how long the memory child's worker runs


FULL = Plan(100_000, 1_000_000, 20_000, 3_000, 3_000, 10.0, 6.0)
QUICK = Plan(100_000, 0, 3_000, 500, 600, 5.0, 2.0)  # --million adds the 1,000,000 figure


# The audience, generated set-based ---------------------------------------------------------------

def series(dialect: str) -> tuple[str, str]:
    """(WITH prefix, FROM source) giving rows g = :lo .. :hi."""
    if dialect == "postgresql":
        return "", "generate_series(:lo, :hi) AS s(g)"
    return "WITH RECURSIVE s(g) AS (SELECT :lo UNION ALL SELECT g + 1 FROM s WHERE g < :hi) ", "s"


def generate(engine: Any, lo: int, hi: int, state: str, petition_id: int,
             now: dt.datetime) -> None:
    """Supporters lo..hi who signed; subscribed to updates unless `state` says otherwise."""
    from sqlalchemy import bindparam, text

    from models.base import UTCDateTime

    dialect = engine.dialect.name
    with_, source = series(dialect)
    if dialect == "postgresql":
        chat, pad = "(1000000000 + g)::text", "lpad(g::text, 9, '0')"
    else:
        chat, pad = "CAST(1000000000 + g AS TEXT)", "substr('000000000' || g, -9, 9)"
    telegram = "g % 10 < 3"
    channel = (f"CASE WHEN {telegram} THEN 'telegram' WHEN g % 10 < 8 THEN 'sms' "
               "ELSE 'whatsapp' END")
    phone = f"'+447' || {pad}"
    address = f"CASE WHEN {telegram} THEN {chat} ELSE {phone} END"
    opted_out = ":now" if state == "opted_out" else "NULL"
    unreachable = ":now" if state == "unreachable" else "NULL"
    stamp = UTCDateTime()
    params = {"lo": lo, "hi": hi, "petition": petition_id}
    statements = [
        f"{with_}INSERT INTO supporters (id, phone, created_at) "
        f"SELECT g, CASE WHEN {telegram} THEN NULL ELSE {phone} END, :now FROM {source}",
        f"{with_}INSERT INTO identities (id, supporter_id, channel, address, opted_out_at, "
        f"unreachable_at, last_inbound_at, created_at) "
        f"SELECT g, g, {channel}, {address}, {opted_out}, {unreachable}, :recent, :now "
        f"FROM {source}",
        f"{with_}INSERT INTO signatures (petition_id, supporter_id, number, name, nation, "
        f"channel, signed_at) SELECT :petition, g, g, 'Bench Supporter', 'england', "
        f"{channel}, :now FROM {source}",
        f"{with_}INSERT INTO subscriptions (identity_id, petition_id, created_at) "
        f"SELECT g, :petition, :now FROM {source}",
    ]
    with engine.begin() as connection:
        for sql in statements:
            binds = [bindparam(name, type_=stamp) for name in ("now", "recent")
                     if f":{name}" in sql]
            connection.execute(text(sql).bindparams(*binds), {
                **params, "now": now, "recent": now - dt.timedelta(hours=1)})


def populate(engine: Any, first: int, eligible: int, petition_id: int,
             now: dt.datetime) -> int:
    """`eligible` recipients from id `first`, then 1% opted out and 1% unreachable;
    returns the next free id."""
    from sqlalchemy import text

    extra = max(eligible // 100, 1)
    generate(engine, first, first + eligible - 1, "eligible", petition_id, now)
    generate(engine, first + eligible, first + eligible + extra - 1, "opted_out", petition_id,
             now)
    generate(engine, first + eligible + extra, first + eligible + 2 * extra - 1, "unreachable",
             petition_id, now)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            for table in ("supporters", "identities", "signatures", "subscriptions"):
                connection.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))
        with engine.connect() as connection:  # as autovacuum would after a bulk load
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("ANALYZE"))
    return first + eligible + 2 * extra


# Senders -----------------------------------------------------------------------------------------

class Tally:
    """Counts sends across threads; `done` is set at the `target`-th."""

    def __init__(self, target: int = 0, keep_times: bool = False) -> None:
        self.target = target
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.times: list[float] = []
        self.keep_times = keep_times
        self.lock = threading.Lock()
        self.done = threading.Event()

    def tick(self) -> None:
        now = time.perf_counter()
        with self.lock:
            self.count += 1
            if self.count == 1:
                self.first = now
            self.last = now
            if self.keep_times:
                self.times.append(time.monotonic())
            if self.count == self.target:
                self.done.set()

    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.count > 1 else 0.0


class InstantSender:
    """A provider that accepts everything at once (no I/O)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def send(self, job: Any) -> Any:
        from bot.core.outcomes import Result, SendResult

        self.tally.tick()
        return SendResult(Result.SENT, provider_id=f"bench-{job.delivery_id}")


class Counting:
    """A real sender, counted."""

    def __init__(self, sender: Any, tally: Tally) -> None:
        self.sender = sender
        self.tally = tally

    def send(self, job: Any) -> Any:
        result = self.sender.send(job)
        self.tally.tick()
        return result


def bench_job(channel: str, n: int) -> Any:
    from bot.core.outcomes import Job

    address = str(1_000_000_000 + n) if channel == "telegram" else f"+447{n:09d}"
    return Job(n, 1, n, channel, address, 0, dt.datetime.now(dt.UTC), TEXT + " Reply STOP")


# Running a worker for a while --------------------------------------------------------------------

@dataclass
class Counts:
    statements: int = 0
    commits: int = 0


@contextmanager
def counting(engine: Any) -> Iterator[Counts]:
    from sqlalchemy import event

    counts = Counts()

    def on_execute(*_: Any) -> None:
        counts.statements += 1

    def on_commit(*_: Any) -> None:
        counts.commits += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


def run_worker(config: Any, sessions: Any, senders: dict[str, Any], pacer: Any,
               stop_when: Callable[[], bool], limit: float) -> bool:
    """A BroadcastWorker's `run` (main loop and channel threads) until `stop_when` or
    `limit` seconds; True if it stopped because `stop_when` held."""
    from bot.entry.worker import BroadcastWorker

    worker = BroadcastWorker(config, sessions, senders, pacer, batch=BATCH)
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + limit
    reached = False
    while time.monotonic() < deadline and thread.is_alive():
        if stop_when():
            reached = True
            break
        time.sleep(0.005)
    worker.stop()
    thread.join(120)
    if thread.is_alive():
        raise RuntimeError("the worker did not stop within 120 s")
    return reached


# The loopback fake Twilio, in its own process ----------------------------------------------------

def _twilio_process(conn: Any) -> None:
    sys.path.insert(0, str(ROOT))
    import tests.fakes.twilio_api as fake_module

    # The fake writes headers and body in two writes; with Nagle's algorithm on, each
    # answer then waits ~40 ms for the client's delayed ACK, and every request on a kept-
    # alive connection takes 44 ms whatever the product does. api.twilio.com has no such
    # stall, so it is turned off here (the fake should set it itself).
    fake_module._Handler.disable_nagle_algorithm = True
    with fake_module.FakeTwilio(SID, TOKEN) as fake:
        conn.send(fake.base_url)
        conn.recv()
        conn.send(len(fake.sent))


@contextmanager
def fake_twilio() -> Iterator[tuple[str, Callable[[], int]]]:
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_twilio_process, args=(child,), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the fake Twilio did not start")
        url = parent.recv()
        accepted: list[int] = []

        def stop() -> int:
            if not accepted:
                parent.send("stop")
                accepted.append(parent.recv() if parent.poll(30) else -1)
            return accepted[0]

        yield url, stop
        stop()
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def twilio_senders(base_url: str, tally: Tally) -> dict[str, Any]:
    from bot.channels.twilio import TwilioSender
    from bot.infra.settings import Settings

    settings = Settings(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                        twilio_sms_from="+447700900000",
                        twilio_whatsapp_from="whatsapp:+447700900001",
                        twilio_api_base_url=base_url,
                        public_base_url="https://petition.example.org")
    return {channel: Counting(TwilioSender(settings, channel), tally)
            for channel in ("sms", "whatsapp")}


# Child processes for peak memory -----------------------------------------------------------------

CHILD_MODULES = ("bot.entry.worker", "bot.shell.broadcast", "bot.infra.pacing",
                 "bot.channels.twilio", "bot.channels.telegram", "bot.infra.logs", "models",
                 "models.db", "sqlalchemy", "psycopg")


def child_main(args: argparse.Namespace) -> int:
    """`--child idle|worker`: print {"maxrss_kb": ..., "sent": ...} as JSON."""
    import importlib

    for name in CHILD_MODULES:
        importlib.import_module(name)
    from sqlalchemy import text

    from bot.infra.config import load_config
    from bot.infra.pacing import LocalPacer
    from models.db import make_engine, make_sessions

    engine = make_engine(args.url)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    sent = 0
    if args.child == "worker":
        setup_logging(Path(args.log))
        config = load_config(args.config)
        tally = Tally()
        senders = {c: InstantSender(tally) for c in ("sms", "whatsapp", "telegram")}
        run_worker(config, make_sessions(engine), senders, LocalPacer({}), lambda: False,
                   args.seconds)
        sent = tally.count
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"maxrss_kb": usage.ru_maxrss, "sent": sent}))
    return 0


def run_child(kind: str, url: str, config: Path, seconds: float, log: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--url", url, "--config", str(config),
         "--seconds", str(seconds), "--log", str(log)],
        capture_output=True, text=True, timeout=seconds + 120, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def setup_logging(path: Path) -> None:
    """Production's log handler (one line per send, redacted), into a file."""
    stream = path.open("a", encoding="utf-8")
    try:
        from bot.infra import logs

        handler = logs.make_handler(stream)
    except (ImportError, AttributeError):
        handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("twilio.http_client", "httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


# One database ------------------------------------------------------------------------------------

@dataclass
class Result:
    db: str
    # measure, product, baseline, goal, verdict
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: str = ""

    def add(self, measure: str, product: str, baseline: str, goal: str = "",
            ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append((measure, product, baseline, goal, verdict))
        print(f"  {self.db}: {measure}: {product}  (baseline {baseline}) {verdict}", flush=True)


def write_config(workdir: Path) -> Path:
    source = (ROOT / "config.toml").read_text(encoding="utf-8")
    changed = re.sub(r"(?m)^quiet_hours\s*=.*$", 'quiet_hours = ""', source)
    changed = re.sub(r'(?m)^issue_file\s*=\s*"(.*)"',
                     lambda m: f'issue_file = "{(ROOT / m[1]).as_posix()}"', changed)
    path = workdir / "config.toml"
    path.write_text(changed, encoding="utf-8")
    return path




def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def busiest_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)),
               default=0)


def run_database(kind: str, plan: Plan, args: argparse.Namespace, workdir: Path) -> Result:
    from sqlalchemy import func, select, text

    from bot.infra.config import load_config
    from bot.infra.pacing import LocalPacer
    from bot.shell import broadcast
    from bot.shell.service import Service
    from models import Announcement, Delivery
    from models.db import make_engine, make_sessions

    result = Result(kind)
    print(f"{kind}:", flush=True)
    url = fresh_database(kind, workdir, args.pg_url, "bench-broadcast")
    config_path = write_config(workdir)
    config = load_config(config_path)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    Service(config, sessions).sync_petitions()
    log_path = workdir / f"worker-{kind}.log"
    setup_logging(log_path)
    now = dt.datetime.now(dt.UTC)
    with engine.connect() as connection:
        petition_id = connection.scalar(text("SELECT id FROM petitions WHERE slug = 'sirt'"))

    # 1. the audience
    seconds, next_id = timed(lambda: populate(engine, 1, plan.audience, petition_id, now))
    result.notes.append(f"generated {plan.audience:,} recipients (+2% ineligible) in "
                        f"{seconds:.1f} s")

    # 2. the outbox, and a plain INSERT ... SELECT of as many rows
    def outbox() -> tuple[int, int]:
        with sessions.begin() as session:
            announcement = broadcast.create(session, config, "sirt", TEXT, "bench", now=now)
            queued = broadcast.approve(session, config, announcement, "bench", now,
                                       operator=True)
            return announcement.id, queued

    outbox_s, (announcement_id, queued) = timed(outbox)
    if queued != plan.audience:
        raise RuntimeError(f"outbox has {queued} rows, expected {plan.audience}")
    with engine.begin() as connection:
        connection.execute(text(
            "CREATE TABLE scratch_deliveries (announcement_id INTEGER, identity_id INTEGER, "
            "channel VARCHAR(16), status VARCHAR(16), attempts INTEGER, used_template BOOLEAN, "
            "created_at TIMESTAMP)"))

    def plain() -> int:
        with engine.begin() as connection:
            return int(connection.execute(text(
                "INSERT INTO scratch_deliveries SELECT 1, id, channel, 'pending', 0, false, "
                "created_at FROM identities ORDER BY id LIMIT :n"), {"n": plan.audience})
                .rowcount)

    plain_s, plain_rows = timed(plain)
    if plain_rows != plan.audience:
        raise RuntimeError(f"baseline inserted {plain_rows} rows, expected {plan.audience}")
    result.add(f"outbox for {plan.audience:,} (create+approve)", f"{outbox_s:.2f} s",
               f"{plain_s:.2f} s plain INSERT..SELECT", f"< {GOAL_OUTBOX_S:g} s",
               outbox_s < GOAL_OUTBOX_S)

    result.notes.append(f"at {plan.audience:,}: {loop_costs(config, sessions)}")

    # 3. sends, rate limits off, in-process sender
    tally = Tally(plan.sends)
    senders = {c: InstantSender(tally) for c in ("sms", "whatsapp", "telegram")}
    with counting(engine) as counts:
        run_worker(config, sessions, senders, LocalPacer({}), tally.done.is_set, 300)
    rate = tally.rate()
    per_message = (f"{counts.statements / max(tally.count, 1):.2f} statements, "
                   f"{counts.commits / max(tally.count, 1):.2f} commits per message")
    bare = Tally()
    bare_sender = InstantSender(bare)
    jobs = [bench_job("sms", n) for n in range(plan.sends)]
    bare_s, _ = timed(lambda: [bare_sender.send(job) for job in jobs])
    commit_rate = raw_commit_rate(engine, plan.commits)
    result.add("sends/s, in-process sender, no rate limit",
               f"{rate:,.0f}/s ({tally.count:,} sent)",
               f"{plan.sends / bare_s:,.0f}/s bare sender loop; {commit_rate:,.0f} commits/s "
               "raw UPDATE+COMMIT", f">= {GOAL_SENDS:,.0f}/s", rate >= GOAL_SENDS)
    result.notes.append(f"worker against the in-process sender: {per_message} "
                        f"(batch {BATCH}; including the main loop's heartbeat and progress)")
    if args.profile:
        result.profile = profile_sends(config, sessions, min(plan.sends, 3000))

    # 4. sends against the loopback fake Twilio
    with fake_twilio() as (base_url, stop):
        http = Tally(plan.http_sends)
        run_worker(config, sessions, twilio_senders(base_url, http), LocalPacer({}),
                   http.done.is_set, 300)
        bare_http = Tally()
        sender = twilio_senders(base_url, bare_http)["sms"]
        http_jobs = [bench_job("sms", 500_000_000 + n) for n in range(plan.http_sends)]
        bare_http_s, _ = timed(lambda: [sender.send(job) for job in http_jobs])
        accepted = stop()
    if accepted != http.count + bare_http.count:
        result.notes.append(f"fake Twilio accepted {accepted}, sent {http.count} + "
                            f"{bare_http.count}")
    result.add("sends/s, loopback fake Twilio (SMS+WhatsApp)",
               f"{http.rate():,.0f}/s ({http.count:,} sent)",
               f"{plan.http_sends / bare_http_s:,.0f}/s bare TwilioSender loop")

    # 5. a configured 30/s
    paced = Tally(keep_times=True)
    run_worker(config, sessions, {"sms": InstantSender(paced)},
               LocalPacer({"sms": CONFIGURED_RATE}), lambda: False, plan.paced_seconds)
    achieved = paced.rate() / CONFIGURED_RATE
    bare_pacer = LocalPacer({"sms": CONFIGURED_RATE})
    pacer_times: list[float] = []
    deadline = time.monotonic() + plan.paced_seconds
    while time.monotonic() < deadline:
        bare_pacer.wait("sms")
        pacer_times.append(time.monotonic())
    pacer_ratio = (len(pacer_times) - 1) / (pacer_times[-1] - pacer_times[0]) / CONFIGURED_RATE
    result.add(f"achieved/configured at {CONFIGURED_RATE:g}/s over {plan.paced_seconds:g} s",
               f"{achieved:.3f} ({paced.count} sent, at most {busiest_second(paced.times)} "
               "in any 1 s)", f"{pacer_ratio:.3f} pacer alone",
               f"{GOAL_RATIO[0]:.2f}-{GOAL_RATIO[1]:.2f}",
               GOAL_RATIO[0] <= achieved <= GOAL_RATIO[1])

    # 6. peak memory: a worker child at 100,000, then at 1,000,000
    idle = run_child("idle", url, config_path, 0, log_path)
    at_audience = run_child("worker", url, config_path, plan.memory_seconds, log_path)
    idle_mb = idle["maxrss_kb"] / 1024
    mb = at_audience["maxrss_kb"] / 1024
    result.add(f"worker peak RSS at {plan.audience:,}",
               f"{mb:.0f} MB ({at_audience['sent']:,} sent in {plan.memory_seconds:g} s)",
               f"{idle_mb:.0f} MB idle interpreter, same imports", f"< {GOAL_MEMORY_MB:g} MB",
               mb < GOAL_MEMORY_MB)
    if plan.big:
        with sessions.begin() as session:
            broadcast.cancel(session, session.get(Announcement, announcement_id), "bench",
                             dt.datetime.now(dt.UTC))
        more = plan.big - plan.audience
        seconds, _ = timed(lambda: populate(engine, next_id, more, petition_id, now))
        result.notes.append(f"generated {more:,} more recipients in {seconds:.1f} s")
        big_s, (big_id, big_queued) = timed(outbox)
        result.notes.append(f"outbox for {big_queued:,}: {big_s:.1f} s")
        result.notes.append(f"at {big_queued:,}: {loop_costs(config, sessions)}")
        at_big = run_child("worker", url, config_path, plan.memory_seconds, log_path)
        big_mb = at_big["maxrss_kb"] / 1024
        result.add(f"worker peak RSS at {big_queued:,}",
                   f"{big_mb:.0f} MB ({at_big['sent']:,} sent in {plan.memory_seconds:g} s)",
                   f"{idle_mb:.0f} MB idle interpreter", f"< {GOAL_MEMORY_MB:g} MB",
                   big_mb < GOAL_MEMORY_MB)
        with sessions() as session:
            statuses = dict(session.execute(select(Delivery.status, func.count()).where(
                Delivery.announcement_id == big_id).group_by(Delivery.status)).all())
        if statuses.get("claimed") or statuses.get("sending"):
            result.notes.append(f"rows left held after the worker stopped: {statuses}")
    engine.dispose()
    return result


def loop_costs(config: Any, sessions: Any) -> str:
    """What one claim (50 SMS rows; rolled back) and one progress count cost now."""
    from bot.entry.worker import BroadcastWorker
    from bot.infra.pacing import LocalPacer

    worker = BroadcastWorker(config, sessions, {}, LocalPacer({}), batch=BATCH)
    with sessions() as session:
        session.begin()
        claim_s, jobs = timed(lambda: worker.claim(session, "sms"))
        session.rollback()
    totals_s, _ = timed(worker._totals)
    return (f"claim of {len(jobs)} SMS rows {claim_s * 1000:.0f} ms, the main loop's progress "
            f"count {totals_s * 1000:.0f} ms (every heartbeat)")


def raw_commit_rate(engine: Any, count: int) -> float:
    """One UPDATE and one COMMIT per row, on the scratch table (the database's floor)."""
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE scratch_commits (id INTEGER PRIMARY KEY, "
                                "status VARCHAR(16))"))
        connection.execute(text("INSERT INTO scratch_commits (id, status) VALUES (:i, 'p')"),
                           [{"i": i} for i in range(count)])
    start = time.perf_counter()
    with engine.connect() as connection:
        for i in range(count):
            connection.execute(text("UPDATE scratch_commits SET status = 's' WHERE id = :i"),
                               {"i": i})
            connection.commit()
    return count / (time.perf_counter() - start)


def profile_sends(config: Any, sessions: Any, count: int) -> str:
    """One channel's claim + send_batch loop in this thread, under cProfile."""
    from bot.entry.worker import BroadcastWorker
    from bot.infra.pacing import LocalPacer

    tally = Tally()
    worker = BroadcastWorker(config, sessions, {"sms": InstantSender(tally)}, LocalPacer({}),
                             batch=BATCH)
    profiler = cProfile.Profile()
    profiler.enable()
    while tally.count < count:
        with sessions.begin() as session:
            jobs = worker.claim(session, "sms")
        if not jobs:
            break
        worker.send_batch("sms", jobs)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    return f"profile of {tally.count} sends (one channel, this thread):\n" + out.getvalue()


# The table ---------------------------------------------------------------------------------------

def report(results: list[Result], mode: str, elapsed: float, load: str) -> str:
    lines = [
        "",
        f"petitionbot broadcast benchmark ({mode}); {os.cpu_count()} CPUs; total "
        f"{elapsed:.0f} s; load average before/after {load} / {_loadavg()}",
        "",
    ]
    widths = (46, 34, 52, 11, 4)
    header = ("measure", "product", "baseline (same run)", "goal", "")
    for r in results:
        lines.append(f"[{r.db}]")
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines.append("-" * (sum(widths) + 8))
        for row in r.rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        for note in r.notes:
            lines.append(f"  - {note}")
        lines.append("")
    for r in results:
        if r.profile:
            lines.append(f"[{r.db}] {r.profile}")
    return "\n".join(lines)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sends, shorter windows")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL", PG_URL),
                        help=f"loopback PostgreSQL database to wipe and use (default {PG_URL})")
    parser.add_argument("--no-million", action="store_true",
                        help="skip the 1,000,000-recipient memory figure")
    parser.add_argument("--million", action="store_true",
                        help="with --quick: include the 1,000,000-recipient figure")
    parser.add_argument("--profile", action="store_true", help="profile one channel's sends")
    parser.add_argument("--child", choices=["idle", "worker"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    plan = QUICK if args.quick else FULL
    if args.no_million:
        plan = Plan(**{**plan.__dict__, "big": 0})
    elif args.million:
        plan = Plan(**{**plan.__dict__, "big": FULL.big})
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    load = _loadavg()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="petitionbot-bench-broadcast-") as tmp:
        for kind in kinds:
            results.append(run_database(kind, plan, args, Path(tmp)))
    print(report(results, "quick" if args.quick else "full", time.perf_counter() - started,
                 load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
