"""Events (issue #16): how fast the worker's courier empties the outbox, and what one
receiver costs a signing.

    .venv/bin/python bench/events.py            # 20,000 events; 2,000 signings
    .venv/bin/python bench/events.py --quick    # 2,000 events; 300 signings

For each database (SQLite in a temporary folder, then PostgreSQL on loopback), made fresh
by `petitionbot db upgrade`:
1. delivery: N events recorded by events.record for N/10 supporters, ten each, interleaved
   (so each supporter's order matters), for one receiver: a stdlib ThreadingHTTPServer in a
   process of its own on loopback that verifies each signature and answers 200. A real
   BroadcastWorker (no channels: its courier, own sessions, ReceiverPoster) runs from its
   start until no delivery is unsettled. Baseline, against the same receiver, before and
   after: the same bodies, signed the same way, posted by requests.Session from as many
   threads as the courier posts with to one receiver, no database. Checked: every event
   arrived, once after de-duplication by id, each supporter's in order, signatures valid.
2. recording: supporters sign by SMS (inbound.py's seven signed Twilio messages each)
   through the Flask app in this process (test client) on two databases, one with no
   receiver and one with a receiver that wants every type (never posted to: no worker),
   in alternating rounds (each first in turn), the same supporters on each. Checked: no
   event written without a receiver, one delivery per event with it.
The exit status is 1 if a check fails.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import harness
import inbound
import requests
from broadcast import setup_logging

sys.path.insert(0, str(harness.ROOT))

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import make_url

from bot.channels.receivers import ReceiverPoster
from bot.entry.worker import BroadcastWorker
from bot.infra.config import Config, load_config
from bot.infra.settings import Settings
from bot.shell import events
from bot.shell.event_delivery import DEFAULT
from models.db import make_engine, make_sessions
from models.events import UNSETTLED
from models.tables import event_deliveries, event_receivers, events_table
from webhooks import create_app

SECRET = "whsec_bench-events-secret"
EACH = 10                 # events per supporter
ROUNDS = 4                # alternating rounds of the recording measure
WARM_UP = 10              # signings on each app before the clock starts
SETTLE_LIMIT = 3600.0     # seconds the courier is given to empty the outbox
NOWHERE = "http://127.0.0.1:9/events"   # the recording measure's receiver: never posted to
Post = tuple[int, bytes, str]           # supporter, body, signature


def add_receiver(engine: Engine, url: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(event_receivers).values(
            url=url, secret=SECRET, events=list(events.TYPES), created_by="bench@example.org",
            created_at=dt.datetime.now(dt.UTC)))


def receiver_main(port: str) -> int:
    """`--receiver PORT`: a POST is verified and kept as (id, valid); GET hands over what
    came since the last GET, in the order it came."""
    came: list[tuple[str, bool]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a CRM's server would

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            valid = events.verify(SECRET, raw, self.headers.get(events.HEADER) or "")
            with lock:
                came.append((json.loads(raw)["id"], valid))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(came).encode()
                came.clear()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


# 1. Delivery -----------------------------------------------------------------------------

def event_for(supporter: int, n: int, now: dt.datetime) -> tuple[str, dict[str, Any]]:
    """A supporter's n-th event: a signing, then updates asked for, then messages."""
    if n == 0:
        row = SimpleNamespace(id=supporter, number=supporter, supporter_id=supporter,
                              name="Bench Supporter", postcode="SW1A 1AA", country="GB",
                              nation="England", channel="sms", source=None, referral=None,
                              signed_at=now)
        return events.SIGNATURE_CREATED, events.signature_data("sirt", row)
    if n == 1:
        return events.SUBSCRIPTION_CHANGED, events.subscription_data(
            supporter, "sirt", "sms", True, "opted_in")
    return events.CONVERSATION_MESSAGE, events.message_data(
        supporter, supporter, "sms", supporter * EACH + n, f"Bench message {n}", now, False)


def fill_outbox(engine: Engine, supporters: int) -> dict[str, tuple[int, int]]:
    """EACH events per supporter, recorded round by round (so interleaved); each event's
    (supporter, n)."""
    now = dt.datetime.now(dt.UTC)
    made: dict[str, tuple[int, int]] = {}
    for n in range(EACH):
        with engine.begin() as conn:
            for supporter in range(1, supporters + 1):
                public_id = events.record(conn, *event_for(supporter, n, now), supporter, now)
                assert public_id is not None
                made[public_id] = (supporter, n)
    return made


def bodies(engine: Engine) -> list[Post]:
    """Every event's body and signature, made as the courier makes them."""
    t = events_table.c
    with engine.connect() as conn:
        rows = conn.execute(select(t.supporter_id, t.public_id, t.type, t.created_at, t.data)
                            .order_by(t.id)).all()
    raws = [(r.supporter_id, events.body(r.public_id, r.type, r.created_at, r.data))
            for r in rows]
    return [(supporter, raw, events.signature(SECRET, raw)) for supporter, raw in raws]


def plain_posts(url: str, posts: list[Post], threads: int) -> float:
    """Seconds for `threads` threads, a requests.Session each, to post every body (each
    supporter's from one thread, in order)."""
    refused: list[int] = []

    def work(mine: list[Post]) -> None:
        with requests.Session() as session:
            for _, raw, signature in mine:
                answer = session.post(url, data=raw, timeout=(5, 10), headers={
                    "Content-Type": "application/json", events.HEADER: signature})
                if answer.status_code != 200:
                    refused.append(answer.status_code)

    workers = [threading.Thread(target=work, args=([p for p in posts if p[0] % threads == k],))
               for k in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if refused:
        raise RuntimeError(f"the receiver refused {len(refused)} posts: {refused[:5]}")
    return time.perf_counter() - started


def run_courier(engine: Engine, config: Config) -> float:
    """Seconds from a BroadcastWorker's start until no delivery is unsettled."""
    worker = BroadcastWorker(config, make_sessions(engine), {}, poster=ReceiverPoster())
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    unsettled = select(func.count()).select_from(event_deliveries).where(
        event_deliveries.c.status.in_(UNSETTLED))
    started = time.perf_counter()
    thread.start()
    try:
        while time.perf_counter() - started < SETTLE_LIMIT and thread.is_alive():
            time.sleep(0.05)
            with engine.connect() as conn:
                if not conn.scalar(unsettled):
                    return time.perf_counter() - started
        raise RuntimeError(f"the outbox was not settled in {SETTLE_LIMIT:g} s")
    finally:
        worker.stop()
        thread.join(120)


def check(made: dict[str, tuple[int, int]], came: list[tuple[str, bool]]) -> str:
    """What is wrong: '' when every event came, once after de-dup, in order, signed."""
    seen: set[str] = set()
    last: dict[int, int] = {}
    problems = [f"bad signature on {event}" for event, valid in came if not valid]
    for event, _ in came:
        if event in seen:
            continue
        seen.add(event)
        if event not in made:
            problems.append(f"unknown event {event}")
            continue
        supporter, n = made[event]
        if n < last.get(supporter, -1):
            problems.append(f"supporter {supporter}: event {n} after {last[supporter]}")
        last[supporter] = max(n, last.get(supporter, -1))
    if missing := len(made.keys() - seen):
        problems.append(f"{missing} events never came")
    return "; ".join(problems[:3])


def delivery(kind: str, result: harness.Result, workdir: Path, pg_url: str, count: int,
             config: Config) -> bool:
    threads = min(DEFAULT.slots, DEFAULT.per_receiver)
    engine = make_engine(harness.fresh_database(kind, workdir, pg_url))
    port = harness.free_port()
    base = f"http://127.0.0.1:{port}"
    add_receiver(engine, f"{base}/events")
    made = fill_outbox(engine, count // EACH)
    posts = bodies(engine)

    def came() -> list[tuple[str, bool]]:
        return [(event, valid) for event, valid in requests.get(base, timeout=30).json()]

    command = [sys.executable, __file__, "--receiver", str(port)]
    with harness.Server(command, workdir / "receiver.log") as server:
        server.wait(base)
        before = plain_posts(f"{base}/events", posts, threads)
        problems = [check(made, came())]
        courier = run_courier(engine, config)
        problems.append(check(made, came()))
        after = plain_posts(f"{base}/events", posts, threads)
        problems.append(check(made, came()))
    engine.dispose()
    plain = statistics.mean((before, after))
    result.add(f"delivery: {count:,} events, {count // EACH:,} supporters x {EACH}, "
               "1 receiver", f"courier {count / courier:,.0f} events/s ({courier:,.1f} s)",
               f"requests.Session x {threads} threads {count / plain:,.0f} events/s "
               f"({before:,.1f} s, {after:,.1f} s); courier/baseline {plain / courier:.2f}")
    ok = not any(problems)
    result.add("delivery: each event once after de-dup, in order per supporter, signed",
               problems[1] or "all", problems[0] or problems[2] or "all", "all", ok)
    return ok


# 2. Recording -----------------------------------------------------------------------------

def sign_up(client: Any, people: list[list[tuple[bytes, str]]]) -> float:
    """Seconds for each person's seven messages, one after another, each answered 200 and
    the signing confirmed."""
    started = time.perf_counter()
    for messages in people:
        for step, (form, signature) in enumerate(messages):
            answer = client.post(inbound.PATH, data=form, base_url=inbound.PUBLIC_BASE_URL,
                                 content_type="application/x-www-form-urlencoded",
                                 headers={"X-Twilio-Signature": signature})
            if answer.status_code != 200 or (step == 5 and inbound.SIGNED not in answer.data):
                raise RuntimeError(f"step {step}: {answer.status_code} {answer.data[:300]!r}")
    return time.perf_counter() - started


def recording(kind: str, result: harness.Result, workdir: Path, pg_url: str,
              signings: int) -> bool:
    people = inbound.supporters(0, signings + WARM_UP)
    apps: dict[str, Any] = {}
    engines: dict[str, Engine] = {}
    seconds: dict[str, list[float]] = {}
    for name, suffix in (("no receiver", ""), ("1 receiver", "_receiver")):
        (workdir / f"recording{suffix}").mkdir()
        pg = make_url(pg_url)
        url, engines[name], _, _, _ = harness.product_database(
            kind, workdir / f"recording{suffix}",
            pg.set(database=f"{pg.database}{suffix}").render_as_string(False))
        if suffix:
            add_receiver(engines[name], NOWHERE)
        apps[name] = create_app(Settings(
            database_url=url, config_path=str(harness.ROOT / "config.toml"),
            public_base_url=inbound.PUBLIC_BASE_URL, secret_key="bench-events-secret",
            twilio_account_sid=inbound.ACCOUNT_SID, twilio_auth_token=inbound.AUTH_TOKEN))
        sign_up(apps[name].test_client(), people[signings:])
        seconds[name] = []
    per_round = signings // ROUNDS
    for n in range(ROUNDS):  # which goes first alternates too
        for name in sorted(apps, reverse=n % 2 == 1):
            seconds[name].append(sign_up(apps[name].test_client(),
                                         people[n * per_round:(n + 1) * per_round]))
    messages = 7 * per_round * ROUNDS
    rate = {name: messages / sum(s) for name, s in seconds.items()}
    written = {}
    for name, app in apps.items():
        with engines[name].connect() as conn:
            written[name] = [conn.scalar(select(func.count()).select_from(table)) or 0
                             for table in (events_table, event_deliveries)]
        app.extensions["petitionbot"].engine.dispose()
        engines[name].dispose()
    result.add(f"recording: {per_round * ROUNDS:,} signings by SMS ({messages:,} messages), "
               f"{ROUNDS} alternating rounds", f"1 receiver {rate['1 receiver']:,.0f} msgs/s",
               f"no receiver {rate['no receiver']:,.0f} msgs/s; with/without "
               f"{rate['1 receiver'] / rate['no receiver']:.2f}")
    made, posts = written["1 receiver"]
    ok = written["no receiver"] == [0, 0] and made == posts >= signings + WARM_UP
    result.add("recording: events, deliveries written (no worker)",
               f"1 receiver {made:,}, {posts:,} ({made / (signings + WARM_UP):.1f} a signing)",
               "no receiver {:,}, {:,}".format(*written["no receiver"]),
               "none without; one delivery each with", ok)
    result.notes.append("recording by round, no receiver / 1 receiver msgs/s: " + "; ".join(
        f"{7 * per_round / a:,.0f}/{7 * per_round / b:,.0f}"
        for a, b in zip(seconds["no receiver"], seconds["1 receiver"], strict=True)))
    return ok


def run_database(kind: str, quick: bool, pg_url: str, workdir: Path,
                 failed: list[str]) -> harness.Result:
    print(f"{kind}:", flush=True)
    result = harness.Result(kind)
    (workdir / "delivery").mkdir(parents=True)
    setup_logging(workdir / "worker-and-app.log")
    config = load_config(harness.ROOT / "config.toml")
    if not delivery(kind, result, workdir / "delivery", pg_url, 2_000 if quick else 20_000,
                    config):
        failed.append(f"{kind} delivery")
    if not recording(kind, result, workdir, pg_url, 300 if quick else 2_000):
        failed.append(f"{kind} recording")
    result.notes.append(f"the courier posts at most {DEFAULT.per_receiver} at once to one "
                        "receiver (event_delivery.PER_RECEIVER); the baseline as many")
    result.notes.append("recording: Flask test client in this process, one request at a time; "
                        "production logging to a file throughout")
    return result


def main() -> int:
    if sys.argv[1:2] == ["--receiver"]:
        return receiver_main(sys.argv[2])
    args = harness.options(__doc__ or "", "bench_events").parse_args()
    failed: list[str] = []
    harness.run(args, "events", lambda kind, tmp: run_database(
        kind, args.quick, args.pg_url, tmp / kind, failed))
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
