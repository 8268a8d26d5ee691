"""Inbound capacity (issue #2): simulated supporters sign by SMS over real HTTP.

    .venv/bin/python bench/inbound.py            # about 6 minutes a database
    .venv/bin/python bench/inbound.py --quick    # about 2 minutes a database
    .venv/bin/python bench/inbound.py --quick --code /tmp/before   # another checkout
    .venv/bin/python bench/inbound.py --quick --against /tmp/before  # this one vs that one

For each database it migrates a fresh one and starts three servers side by side, each
`gunicorn -c gunicorn.conf.py APP` with the product's worker settings: the product,
`webhooks:create_app()` run from the checkout --code (default this one: its code,
gunicorn.conf.py, config.toml and migrations; nothing else of it is imported, so an older
checkout is measured the same way; with --against DIR, a fourth server runs DIR's product
on its own database in the same rounds, and the report gives product/earlier by round),
and two baselines from this checkout, the same whatever --code says: bench/bare_app.py
(fixed TwiML, no database: the server alone) and bench/floor_app.py (a minimal signing
path). Supporters each send the 7 messages of a signing ("Hi", "SIGN", "YES", name,
postcode, "YES", "NO"), waiting for each reply, each request signed as Twilio signs it and
built before the clock starts; the load generator (aiohttp, keep-alive) shares the
machine.
1. saturation: 32 supporters at once (closed loop) after a warm-up, the three apps in
   turns for 3 rounds: the machine's speed drifts, so each round compares runs seconds
   apart and the report gives the median of the rounds' ratios;
2. half load: an open loop paced at half the product's saturation rate, each app;
3. checks: every answer a 200, every signing answered "you have signed!", and in the
   product's database one signature per supporter who signed, counters that agree and
   one inbound row per answer; any failure makes the exit status 1.
Goals (issue #2): product saturation at least 0.50 of bare on SQLite, 0.30 on PostgreSQL;
p99 under 100 ms at half load. Only loopback addresses are used; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import ROOT, Result, Server, free_port, fresh_database, options, run
from sqlalchemy.engine import make_url

APPS = {"product": "webhooks:create_app()", "bare": "bench.bare_app:create_app()",
        "floor": "bench.floor_app:create_app()"}
PUBLIC_BASE_URL = "https://petition.example.org"  # only signed over, never contacted
PATH = "/twilio/messages"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
SIGNED = b"you have signed!"  # in the answer to the review's YES (step 5)
POSTCODES = ("SW1A 1AA", "EH1 1YZ", "CF10 1EP", "BT1 5GS", "M1 1AE", "LS1 4DY", "G2 1DY")
GOALS = {"sqlite": 0.50, "postgresql": 0.30}  # product/bare at saturation
P99_GOAL_MS = 100.0
CEILING = 5000  # msgs/s a saturation phase's supporters are built for
GUNICORN = [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py"]


@dataclass(frozen=True)
class Plan:
    warmup: float   # s of saturation before measuring
    measure: float  # s of measured saturation
    half: float     # s of paced half load
    rounds: int = 3
    concurrency: int = 32


FULL = Plan(warmup=5, measure=15, half=15)
QUICK = Plan(warmup=2, measure=5, half=5)


def supporters(first: int, count: int) -> list[list[tuple[bytes, str]]]:
    """Supporters first..first+count-1, each a signing's 7 requests (form, signature)."""
    from twilio.request_validator import RequestValidator

    if first + count > 100_000:
        raise ValueError("the +4477009xxxxx range holds 100,000 supporters")
    validator = RequestValidator(AUTH_TOKEN)
    out = []
    for n in range(first, first + count):
        name, k = "", n + 26 * 26  # letters only, at least three
        while k:
            k, r = divmod(k, 26)
            name = chr(ord("a") + r) + name
        texts = ("Hi", "SIGN", "YES", f"Bench Supporter {name.capitalize()}",
                 POSTCODES[n % len(POSTCODES)], "YES", "NO")
        requests = []
        for step, text in enumerate(texts):
            sid = f"SM{n:024x}{step:08x}"
            form = {"ToCountry": "GB", "ToState": "", "SmsMessageSid": sid, "NumMedia": "0",
                    "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "",
                    "SmsStatus": "received", "FromCity": "", "Body": text,
                    "FromCountry": "GB", "To": "+447700900000", "ToZip": "",
                    "NumSegments": "1", "ReferralNumMedia": "0", "MessageSid": sid,
                    "AccountSid": ACCOUNT_SID, "From": f"+4477009{n:05d}",
                    "ApiVersion": "2010-04-01"}
            requests.append((urllib.parse.urlencode(form).encode(),
                             validator.compute_signature(PUBLIC_BASE_URL + PATH, form)))
        out.append(requests)
    return out


# The load generator ---------------------------------------------------------------------------

@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)  # s, answers inside the window
    rate: float = 0.0      # answers a second inside the window
    ok: int = 0            # 200 answers
    failed: int = 0        # other answers, or none after 3 tries
    retries: int = 0       # connection errors (Twilio tries again; the MessageSid dedupes)
    signed: int = 0        # the review's YES answered "you have signed!"
    missing: int = 0       # ... answered 200 without those words
    exhausted: bool = False  # ran out of prepared supporters: the rate is too low

    def ms(self, q: float) -> float:
        ordered = sorted(self.latencies) or [math.nan]
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    def p50_p99(self) -> str:
        return f"{self.ms(0.50):.1f} / {self.ms(0.99):.1f}"


async def send(session: Any, url: str, request: tuple[bytes, str], step: int,
               phase: Phase) -> None:
    import aiohttp

    body, signature = request
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
    for _ in range(3):
        try:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
        except (TimeoutError, aiohttp.ClientConnectionError):
            phase.retries += 1
            continue
        if response.status != 200:
            break
        phase.ok += 1
        if step == 5:
            phase.signed += SIGNED in payload
            phase.missing += SIGNED not in payload
        return
    phase.failed += 1


async def saturation(session: Any, url: str, pool: Iterator[list[Any]], plan: Plan) -> Phase:
    """Closed loop: `concurrency` supporters at once, each next message sent on an answer."""
    phase = Phase()
    start = time.perf_counter() + plan.warmup
    end = start + plan.measure

    async def lane() -> None:
        while (requests := next(pool, None)) is not None:
            for step, request in enumerate(requests):
                sent = time.perf_counter()
                if sent >= end:
                    return
                await send(session, url, request, step, phase)
                answered = time.perf_counter()
                if start <= answered < end:
                    phase.latencies.append(answered - sent)
        phase.exhausted = True

    await asyncio.gather(*(lane() for _ in range(plan.concurrency)))
    phase.rate = len(phase.latencies) / plan.measure
    return phase


async def paced(session: Any, url: str, pool: Iterator[list[Any]], rate: float,
                seconds: float) -> Phase:
    """Open loop: a message every 1/rate s, from a supporter whose last answer is in (or a
    new one); latency counts from when it was due, so a server falling behind shows."""
    phase = Phase()
    ready: deque[tuple[list[Any], int]] = deque()
    tasks: set[asyncio.Task[None]] = set()

    async def one(requests: list[Any], step: int, due: float) -> None:
        await send(session, url, requests[step], step, phase)
        phase.latencies.append(time.perf_counter() - due)
        if step < 6:
            ready.append((requests, step + 1))

    start = time.perf_counter()
    for tick in range(int(rate * seconds)):
        due = start + tick / rate
        await asyncio.sleep(due - time.perf_counter())
        if ready:
            requests, step = ready.popleft()
        elif (requests := next(pool, None)) is not None:
            step = 0
        else:
            phase.exhausted = True
            break
        task = asyncio.ensure_future(one(requests, step, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, late = await asyncio.wait(list(tasks), timeout=60)
        for task in late:
            task.cancel()
    phase.rate = len(phase.latencies) / seconds
    return phase


async def load(urls: dict[str, str], plan: Plan, db: str) -> dict[str, list[Phase]]:
    """Saturation rounds, the apps in turns; then each app's half load, paced at half the
    product's median saturation rate. Each app's supporters are new in every phase."""
    import aiohttp

    used = dict.fromkeys(urls, 0)

    def pool(app: str, count: int) -> Iterator[list[Any]]:
        used[app] += count
        return iter(supporters(used[app] - count, count))

    phases: dict[str, list[Phase]] = {app: [] for app in urls}
    per_phase = math.ceil(CEILING * (plan.warmup + plan.measure) / 7)
    # keepalive_timeout under the servers' 5 s: the client closes idle connections first,
    # so no request goes out on a connection the server is closing.
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=3)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        for number in range(1, plan.rounds + 1):
            for app, url in urls.items():
                phases[app].append(await saturation(session, url, pool(app, per_phase), plan))
            print(f"  {db}: round {number}: " + ", ".join(
                f"{app} {p[-1].rate:.0f}" for app, p in phases.items()) + " msgs/s", flush=True)
        rate = statistics.median(p.rate for p in phases["product"]) / 2
        for app, url in urls.items():
            pool_size = math.ceil(rate * plan.half / 7) + 64
            phases[app].append(await paced(session, url, pool(app, pool_size), rate, plan.half))
    return phases


# Servers and checks ---------------------------------------------------------------------------

def worker_settings(code: Path, env: dict[str, str]) -> dict[str, str]:
    """Processes and threads the product's gunicorn.conf.py chooses for this database."""
    out = subprocess.run([sys.executable, "-c", "import runpy; c = runpy.run_path("
                          "'gunicorn.conf.py'); print(c['workers'], c['threads'])"],
                         cwd=code, env=env, capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"{code}/gunicorn.conf.py:\n{out.stderr[-3000:]}")
    workers, threads = out.stdout.split()
    return {"WEB_CONCURRENCY": workers, "WEB_THREADS": threads}


def check_database(url: str) -> dict[str, int]:
    """What the product wrote: signatures, people who signed, counters, inbound rows."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as c:
        found = {name: int(c.execute(text(sql)).scalar_one() or 0) for name, sql in (
            ("signatures", "SELECT count(*) FROM signatures"),
            ("signers", "SELECT count(DISTINCT supporter_id) FROM signatures"),
            ("counter", "SELECT sum(signature_count) FROM petitions"),
            ("sms counter", "SELECT sum(count) FROM channel_counts WHERE channel = 'sms'"),
            ("inbound rows", "SELECT count(*) FROM inbound_messages"))}
    engine.dispose()
    return found


def run_database(kind: str, plan: Plan, code: Path, pg_url: str, workdir: Path,
                 against: Path | None = None) -> Result:
    from floor_app import prepare

    print(f"{kind}:", flush=True)
    url = fresh_database(kind, workdir, pg_url, code)
    prepare(url)
    apps = dict(APPS)
    checkouts = {"product": code}
    databases = {app: url for app in apps}
    if against is not None:  # the earlier product, on a database of its own
        apps = {"product": APPS["product"], "earlier": APPS["product"],
                "bare": APPS["bare"], "floor": APPS["floor"]}
        (workdir / "earlier").mkdir(exist_ok=True)
        earlier_pg = make_url(pg_url)
        earlier_pg = earlier_pg.set(database=f"{earlier_pg.database}_earlier")
        databases["earlier"] = fresh_database(
            kind, workdir / "earlier", earlier_pg.render_as_string(hide_password=False),
            against)
        checkouts["earlier"] = against
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("TWILIO_", "TELEGRAM_", "REDIS_", "WEB_", "PETITIONBOT_", "PROMETHEUS_"))}
    env.update(DATABASE_URL=url, PUBLIC_BASE_URL=PUBLIC_BASE_URL, HOST="127.0.0.1",
               PETITIONBOT_CONFIG="config.toml", TWILIO_ACCOUNT_SID=ACCOUNT_SID,
               TWILIO_AUTH_TOKEN=AUTH_TOKEN, SECRET_KEY="bench-secret-key",
               XDG_RUNTIME_DIR=str(workdir), PYTHONUNBUFFERED="1", PYTHONPATH=str(code))
    env.update(worker_settings(code, env))
    ports = {app: free_port() for app in apps}
    with contextlib.ExitStack() as stack:
        servers = {}
        for app, target in apps.items():
            here = checkouts.get(app, ROOT)
            servers[app] = stack.enter_context(Server(
                [*GUNICORN, target], workdir / f"{kind}-{app}.log", here,
                {**env, "PORT": str(ports[app]), "PYTHONPATH": str(here),
                 "DATABASE_URL": databases[app]}))
        for app, server in servers.items():
            server.wait(f"http://127.0.0.1:{ports[app]}/healthz")
        phases = asyncio.run(load({app: f"http://127.0.0.1:{port}{PATH}"
                                   for app, port in ports.items()}, plan, kind))
        errors = {app: len(re.findall(r"Traceback|\[ERROR\]|\[CRITICAL\]|WORKER TIMEOUT",
                                      server.log())) for app, server in servers.items()}
    return summary(kind, plan, env, phases, errors, check_database(url))


def summary(kind: str, plan: Plan, env: dict[str, str], phases: dict[str, list[Phase]],
            errors: dict[str, int], db: dict[str, int]) -> Result:
    result = Result(kind)
    rates = {app: [p.rate for p in ps[:-1]] for app, ps in phases.items()}
    half = {app: ps[-1] for app, ps in phases.items()}

    def times(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True) if y)

    def rate(app: str) -> float:
        return statistics.median(rates[app])

    ratio = times("product", "bare")
    if "earlier" in rates:
        result.add("product / earlier product, same rounds (median)",
                   f"{times('product', 'earlier'):.2f}",
                   f"earlier {rate('earlier'):.0f} = {times('earlier', 'bare'):.2f} x bare")
    result.add(f"saturation, msgs/s (median of {plan.rounds} rounds)",
               f"{rate('product'):.0f} = {ratio:.2f} x bare, "
               f"{times('product', 'floor'):.2f} x floor",
               f"bare {rate('bare'):.0f}; floor {rate('floor'):.0f} = "
               f"{times('floor', 'bare'):.2f} x bare", f">= {GOALS[kind]:.2f} x bare",
               ratio >= GOALS[kind])
    merged = {app: Phase([t for p in ps[:-1] for t in p.latencies]) for app, ps in phases.items()}
    result.add("saturation latency p50 / p99, ms", merged["product"].p50_p99(),
               f"bare {merged['bare'].p50_p99()}; floor {merged['floor'].p50_p99()}")
    result.add(f"half load ({half['product'].rate:.0f} msgs/s, open loop) p50 / p99, ms",
               half["product"].p50_p99(),
               f"bare {half['bare'].p50_p99()}; floor {half['floor'].p50_p99()}",
               f"p99 < {P99_GOAL_MS:g} ms", half["product"].ms(0.99) < P99_GOAL_MS)
    every = {app: (sum(p.ok for p in ps), sum(p.failed for p in ps),
                   sum(p.signed for p in ps), sum(p.missing for p in ps))
             for app, ps in phases.items()}
    answers, failed, signed, missing = every["product"]
    signers = [db["signatures"], db["signers"], db["counter"], db["sms counter"]]
    result.add("signed: signatures, people, counters", f"{signed}: {signers[0]}, {signers[1]}"
               f", {signers[2]}/{signers[3]}", "", "all equal", set(signers) == {signed})
    result.add("answers: inbound rows; non-200, 'signed' missing, log errors",
               f"{answers}: {db['inbound rows']}; {failed}, {missing}, {errors['product']}",
               "; ".join(f"{a} {every[a][1]}, {every[a][3]}, {errors[a]}" for a in ("bare",
                                                                                    "floor")),
               "equal; none", db["inbound rows"] == answers and not any(
                   every[a][1] + every[a][3] + errors[a] for a in phases))
    result.notes.append(f"saturation by round, {' / '.join(rates)} msgs/s: " + "; ".join(
        "/".join(f"{r:.0f}" for r in by_round) for by_round in zip(*rates.values(), strict=True)))
    result.notes.append(f"gunicorn: {env['WEB_CONCURRENCY']} process(es) x "
                        f"{env['WEB_THREADS']} threads each; {plan.concurrency} supporters at "
                        f"saturation (warm-up {plan.warmup:g} s, measured {plan.measure:g} s)")
    retried = {app: sum(p.retries for p in ps) for app, ps in phases.items()}
    if any(retried.values()):
        result.notes.append(f"connection errors, retried: {retried}")
    short = [app for app, ps in phases.items() if any(p.exhausted for p in ps)]
    if short:
        result.notes.append(f"OUT OF PREPARED SUPPORTERS ({short}): raise CEILING")
    return result


def main() -> int:
    parser = options(__doc__ or "", "bench")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout whose product is measured (default this one)")
    parser.add_argument("--against", type=Path, default=None,
                        help="an earlier checkout, measured in the same rounds")
    args = parser.parse_args()
    code = args.code.resolve()
    against = args.against.resolve() if args.against else None
    plan = QUICK if args.quick else FULL
    version = subprocess.run(["git", "-C", str(code), "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip() or "?"
    results = run(args, "inbound", lambda kind, tmp: run_database(kind, plan, code,
                                                                  args.pg_url, tmp, against),
                  f"; product: {code} at {version}; baselines: {ROOT}"
                  + (f"; earlier: {against}" if against else ""))
    return 0 if all(row[3].endswith("PASS") for r in results for row in r.rows[-2:]) else 1


if __name__ == "__main__":
    sys.exit(main())
