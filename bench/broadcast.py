"""Broadcast speed (issue #4): an announcement to 100,000 supporters, and to 1,000,000.

    .venv/bin/python bench/broadcast.py            # about five minutes
    .venv/bin/python bench/broadcast.py --quick    # about a minute: 100,000 only, fewer sends

For each database (SQLite in a temporary folder, then PostgreSQL on loopback) the audience
is generated set-based: supporters who signed and asked for updates, over SMS (50%),
Telegram (30%) and WhatsApp (20%), plus 2% who said STOP or became unreachable. Then, each
beside a baseline measured in the same run:
1. the outbox: broadcast.create + approve, committed; baseline: a plain INSERT INTO ...
   SELECT of as many rows into a table without constraints;
2. sends with no rate limit through the real BroadcastWorker (claims, commits, its main
   loop; production logging to a file) to an in-process sender that accepts at once;
   baseline: one UPDATE + COMMIT per row, the database's commit rate;
3. the same through TwilioSender to the fake Twilio API on loopback (its own process),
   SMS and WhatsApp; baseline: TwilioSender in a bare loop against the same fake;
4. the rate achieved against a configured 30/s, and the most sends in any one second;
   baseline: the pacer alone;
5. peak memory of a process that only runs a worker for a few seconds, at 100,000
   recipients and (full run) 1,000,000; baseline: a process with the same imports, idle.
Goals (issue #4): outbox for 100,000 under 5 s; 1,000 sends/s per worker in-process;
achieved/configured between 0.95 and 1.00; peak memory under 200 MB.
"""

from __future__ import annotations

import bisect
import datetime as dt
import importlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

sys.path.insert(0, str(harness.ROOT))

TEXT = "Thank you for signing! NHS England has agreed to meet us next week."
CONFIGURED_RATE = 30.0
BATCH = 50  # `petitionbot worker --batch` default
GOAL_OUTBOX_S = 5.0
GOAL_SENDS = 1000.0
GOAL_RATIO = (0.95, 1.00)
GOAL_MEMORY_MB = 200.0
SID = "AC" + "0" * 32                         # the fake's own account
TOKEN = "test-auth-token-0123456789abcdef"
CHANNELS = ("sms", "whatsapp", "telegram")
CHILD_MODULES = ("bot.entry.worker", "bot.shell.broadcast", "bot.infra.pacing",
                 "bot.channels.twilio.outbound", "bot.channels.telegram.outbound",
                 "bot.infra.logs", "models",
                 "models.db", "sqlalchemy", "psycopg")


@dataclass(frozen=True)
class Plan:
    audience: int          # recipients of the announcement
    big: int               # recipients for the second memory figure (0: none)
    sends: int             # deliveries sent to the in-process sender
    commits: int           # rows for the commit-rate baseline
    http_sends: int        # deliveries sent to the loopback fake
    paced_seconds: float   # length of the configured-rate window
    memory_seconds: float  # how long the memory child's worker runs


FULL = Plan(100_000, 1_000_000, 20_000, 3_000, 3_000, 10.0, 6.0)
QUICK = Plan(100_000, 0, 3_000, 500, 600, 5.0, 2.0)


def populate(engine: Any, first: int, eligible: int, petition_id: int,
             now: dt.datetime) -> int:
    """`eligible` recipients from id `first`, then 1% opted out and 1% unreachable;
    returns the next free id."""
    from sqlalchemy import bindparam, text

    from models.base import UTCDateTime

    pg = engine.dialect.name == "postgresql"
    with_, source = harness.series(engine.dialect.name)
    chat = "CAST(1000000000 + g AS TEXT)"
    phone = "'+447' || " + ("lpad(CAST(g AS TEXT), 9, '0')" if pg
                            else "substr('000000000' || g, -9, 9)")
    telegram = "g % 10 < 3"
    channel = (f"CASE WHEN {telegram} THEN 'telegram' WHEN g % 10 < 8 THEN 'sms' "
               "ELSE 'whatsapp' END")
    extra = max(eligible // 100, 1)
    stamp = UTCDateTime()
    with engine.begin() as connection:
        for lo, count, state in ((first, eligible, ""), (first + eligible, extra, "opted_out"),
                                 (first + eligible + extra, extra, "unreachable")):
            opted_out = ":now" if state == "opted_out" else "NULL"
            unreachable = ":now" if state == "unreachable" else "NULL"
            for sql in (
                f"{with_}INSERT INTO supporters (id, phone, created_at) SELECT g, CASE WHEN "
                f"{telegram} THEN NULL ELSE {phone} END, :now FROM {source}",
                f"{with_}INSERT INTO identities (id, supporter_id, channel, address, "
                f"opted_out_at, unreachable_at, last_inbound_at, created_at) SELECT g, g, "
                f"{channel}, CASE WHEN {telegram} THEN {chat} ELSE {phone} END, {opted_out}, "
                f"{unreachable}, :recent, :now FROM {source}",
                f"{with_}INSERT INTO signatures (petition_id, supporter_id, number, name, "
                f"nation, channel, signed_at) SELECT :petition, g, g, 'Bench Supporter', "
                f"'england', {channel}, :now FROM {source}",
                f"{with_}INSERT INTO subscriptions (identity_id, petition_id, created_at) "
                f"SELECT g, :petition, :now FROM {source}",
            ):
                binds = [bindparam(name, type_=stamp) for name in ("now", "recent")
                         if f":{name}" in sql]
                connection.execute(text(sql).bindparams(*binds), {
                    "lo": lo, "hi": lo + count - 1, "petition": petition_id, "now": now,
                    "recent": now - dt.timedelta(hours=1)})
    harness.after_bulk_load(engine, ("supporters", "identities", "signatures",
                                     "subscriptions"))
    return first + eligible + 2 * extra


class Tally:
    """Counts sends across threads; `done` is set at the `target`-th."""

    def __init__(self, target: int = 0) -> None:
        self.target = target
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def tick(self) -> None:
        with self.lock:
            self.times.append(time.perf_counter())
            if len(self.times) == self.target:
                self.done.set()

    def rate(self) -> float:
        t = self.times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else 0.0

    def busiest_second(self) -> int:
        t = self.times
        return max((bisect.bisect_left(t, x + 1.0) - i for i, x in enumerate(t)), default=0)


class InstantSender:
    """A provider that accepts everything at once (no I/O)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def send(self, job: Any) -> Any:
        from bot.core.outcomes import Result, SendResult

        self.tally.tick()
        return SendResult(Result.SENT, provider_id=f"bench-{job.delivery_id}")


class Counting:
    """A real sender, counting what it sent."""

    def __init__(self, sender: Any, tally: Tally) -> None:
        self.sender = sender
        self.tally = tally

    def send(self, job: Any) -> Any:
        result = self.sender.send(job)
        if result.result.value == "sent":
            self.tally.tick()
        return result


def twilio_senders(base_url: str, tally: Tally) -> dict[str, Any]:
    from bot.channels.twilio.outbound import TwilioSender
    from bot.infra.settings import Settings

    settings = Settings(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                        twilio_sms_from="+447700900000",
                        twilio_whatsapp_from="whatsapp:+447700900001",
                        twilio_api_base_url=base_url,
                        public_base_url="https://petition.example.org")
    return {channel: Counting(TwilioSender(settings, channel), tally)
            for channel in ("sms", "whatsapp")}


def run_worker(config: Any, sessions: Any, senders: dict[str, Any], pacer: Any,
               stop_when: Callable[[], bool], limit: float) -> None:
    """A BroadcastWorker's `run` (main loop and channel threads) until `stop_when` holds
    or `limit` seconds have passed."""
    from bot.entry.worker import BroadcastWorker

    worker = BroadcastWorker(config, sessions, senders, pacer, batch=BATCH)
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and thread.is_alive() and not stop_when():
        time.sleep(0.005)
    worker.stop()
    thread.join(120)
    if thread.is_alive():
        raise RuntimeError("the worker did not stop within 120 s")


def setup_logging(path: Path) -> None:
    """Production's log handler (one line per send, redacted), into a file."""
    from bot.infra import logs

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(logs.make_handler(path.open("a", encoding="utf-8")))
    root.setLevel(logging.INFO)
    for name in ("twilio.http_client", "httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def child_main(kind: str, url: str, config_path: str, seconds: float, log: str) -> int:
    """`--child idle|worker URL CONFIG SECONDS LOG`: the same imports and a connection,
    and for `worker` a worker run for SECONDS; prints {"mb", "sent"}."""
    for name in CHILD_MODULES:
        importlib.import_module(name)
    from sqlalchemy import text

    from bot.infra.config import load_config
    from bot.infra.pacing import LocalPacer
    from models.db import make_engine, make_sessions

    engine = make_engine(url)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    tally = Tally()
    if kind == "worker":
        setup_logging(Path(log))
        run_worker(load_config(config_path), make_sessions(engine),
                   {c: InstantSender(tally) for c in CHANNELS}, LocalPacer({}),
                   lambda: False, seconds)
    print(json.dumps({"mb": harness.peak_mb(), "sent": len(tally.times)}))
    return 0


def write_config(workdir: Path) -> Path:
    """config.toml with no quiet hours (the bench may run at night)."""
    source = (harness.ROOT / "config.toml").read_text(encoding="utf-8")
    changed = re.sub(r"(?m)^quiet_hours\s*=.*$", 'quiet_hours = ""', source)
    changed = re.sub(r'(?m)^issue_file\s*=\s*"(.*)"',
                     lambda m: f'issue_file = "{(harness.ROOT / m[1]).as_posix()}"', changed)
    path = workdir / "config.toml"
    path.write_text(changed, encoding="utf-8")
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_database(kind: str, plan: Plan, pg_url: str, workdir: Path) -> harness.Result:
    from sqlalchemy import text

    from bot.infra.pacing import LocalPacer
    from bot.shell import broadcast
    from models import Announcement

    result = harness.Result(kind)
    print(f"{kind}:", flush=True)
    config_path = write_config(workdir)
    url, engine, sessions, config, pid = harness.product_database(kind, workdir, pg_url,
                                                                  config_path)
    log_path = workdir / f"worker-{kind}.log"
    setup_logging(log_path)
    now = dt.datetime.now(dt.UTC)
    seconds, next_id = timed(lambda: populate(engine, 1, plan.audience, pid, now))
    result.notes.append(f"generated {plan.audience:,} recipients (+2% ineligible) in "
                        f"{seconds:.1f} s")

    def outbox() -> tuple[int, int]:
        with sessions.begin() as session:
            announcement = broadcast.create(session, config, "sirt", TEXT, "bench", now=now)
            queued = broadcast.approve(session, config, announcement, "bench", now,
                                       operator=True)
            return announcement.id, queued

    def plain() -> int:
        with engine.begin() as connection:
            connection.execute(text(
                "CREATE TABLE scratch_deliveries (announcement_id INTEGER, identity_id INTEGER,"
                " channel VARCHAR(16), status VARCHAR(16), attempts INTEGER, "
                "used_template BOOLEAN, created_at TIMESTAMP)"))
            return int(connection.execute(text(
                "INSERT INTO scratch_deliveries SELECT 1, id, channel, 'pending', 0, false, "
                "created_at FROM identities ORDER BY id LIMIT :n"), {"n": plan.audience})
                .rowcount)

    outbox_s, (announcement_id, queued) = timed(outbox)
    plain_s, plain_rows = timed(plain)
    if queued != plan.audience or plain_rows != plan.audience:
        raise RuntimeError(f"outbox {queued}, plain {plain_rows}: expected {plan.audience}")
    result.add(f"outbox for {plan.audience:,} (create+approve)", f"{outbox_s:.2f} s",
               f"{plain_s:.2f} s plain INSERT..SELECT", f"< {GOAL_OUTBOX_S:g} s",
               outbox_s < GOAL_OUTBOX_S)

    tally = Tally(plan.sends)
    run_worker(config, sessions, {c: InstantSender(tally) for c in CHANNELS}, LocalPacer({}),
               tally.done.is_set, 300)
    result.add("sends/s, in-process sender, no rate limit",
               f"{tally.rate():,.0f}/s ({len(tally.times):,} sent)",
               f"{commit_rate(engine, plan.commits):,.0f} commits/s, UPDATE+COMMIT a row",
               f">= {GOAL_SENDS:,.0f}/s", tally.rate() >= GOAL_SENDS)

    port = harness.free_port()
    with harness.Server([sys.executable, "-m", "tests.fakes.twilio_api", str(port)],
                        workdir / "fake-twilio.log") as fake:
        base_url = f"http://127.0.0.1:{port}"
        fake.wait(base_url + "/")
        http = Tally(plan.http_sends)
        run_worker(config, sessions, twilio_senders(base_url, http), LocalPacer({}),
                   http.done.is_set, 300)
        bare = Tally()
        sender = twilio_senders(base_url, bare)["sms"]
        from bot.core.outcomes import Job

        for n in range(plan.http_sends):
            sender.send(Job(n, 1, n, "sms", f"+447{500_000_000 + n:09d}", 0, now, TEXT))
    result.add("sends/s, loopback fake Twilio (SMS+WhatsApp)",
               f"{http.rate():,.0f}/s ({len(http.times):,} sent)",
               f"{bare.rate():,.0f}/s bare TwilioSender loop ({len(bare.times):,} sent)")

    paced = Tally()
    run_worker(config, sessions, {"sms": InstantSender(paced)},
               LocalPacer({"sms": CONFIGURED_RATE}), lambda: False, plan.paced_seconds)
    pacer, alone = LocalPacer({"sms": CONFIGURED_RATE}), Tally()
    deadline = time.monotonic() + plan.paced_seconds
    while time.monotonic() < deadline:
        pacer.wait("sms")
        alone.tick()
    achieved = paced.rate() / CONFIGURED_RATE
    result.add(f"achieved/configured at {CONFIGURED_RATE:g}/s over {plan.paced_seconds:g} s",
               f"{achieved:.3f} ({len(paced.times)} sent, at most {paced.busiest_second()} "
               "in any 1 s)", f"{alone.rate() / CONFIGURED_RATE:.3f} pacer alone (at most "
               f"{alone.busiest_second()} in any 1 s)",
               f"{GOAL_RATIO[0]:.2f}-{GOAL_RATIO[1]:.2f}",
               GOAL_RATIO[0] <= achieved <= GOAL_RATIO[1])

    def memory(label: str) -> None:
        args = (url, str(config_path), str(plan.memory_seconds), str(log_path))
        idle = harness.run_child(__file__, "idle", *args)
        busy = harness.run_child(__file__, "worker", *args, timeout=plan.memory_seconds + 120)
        result.add(f"worker peak memory at {label}",
                   f"{busy['mb']:.0f} MB ({busy['sent']:,} sent in {plan.memory_seconds:g} s)",
                   f"{idle['mb']:.0f} MB idle, same imports", f"< {GOAL_MEMORY_MB:g} MB",
                   busy["mb"] < GOAL_MEMORY_MB)

    memory(f"{plan.audience:,}")
    if plan.big:
        with sessions.begin() as session:
            broadcast.cancel(session, session.get(Announcement, announcement_id), "bench",
                             dt.datetime.now(dt.UTC))
        seconds, _ = timed(lambda: populate(engine, next_id, plan.big - plan.audience, pid,
                                            now))
        big_s, (_, big_queued) = timed(outbox)
        result.notes.append(f"generated {plan.big - plan.audience:,} more in {seconds:.1f} s;"
                            f" outbox for {big_queued:,}: {big_s:.1f} s")
        memory(f"{big_queued:,}")
    engine.dispose()
    return result


def commit_rate(engine: Any, count: int) -> float:
    """One UPDATE and one COMMIT per row of a scratch table: the database's floor."""
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


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        kind, url, config_path, seconds, log = sys.argv[2:7]
        return child_main(kind, url, config_path, float(seconds), log)
    args = harness.options(__doc__ or "", "bench_broadcast").parse_args()
    plan = QUICK if args.quick else FULL
    harness.run(args, "broadcast", lambda kind, tmp: run_database(kind, plan, args.pg_url, tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
