"""Staff console benchmark: the dashboard and the hand-in export at 1,000,000 signatures.

    .venv/bin/python bench/console.py            # 1,000,000 signatures: a few minutes
    .venv/bin/python bench/console.py --quick    # 100,000 signatures: under a minute

For each database (SQLite in a temporary folder, then PostgreSQL: the `bench_console`
database on loopback, its public schema dropped and recreated) it
1. generates the signatures set-based (generate_series on PostgreSQL, a recursive CTE on
   SQLite): one supporter, identity and signature each, spread over the UK nations and
   their postcode areas (weighted, most populous first), the Crown dependencies, BFPO and
   abroad; SMS 55%, WhatsApp 25%, Telegram 20%; signed over 90 days with a launch spike,
   a press spike on day 40 and a decaying tail; 45% with a referral (a few campaign codes,
   a long tail of share codes); 35% subscribed to updates; the petition's counters bumped
   to match; then ANALYZE on PostgreSQL (as autovacuum would after a bulk load);
2. times the dashboard as staff get it: GET /staff/ (the default 60 days, then 365 days)
   through the Flask test client with a logged-in admin and the figures cache off, so
   each request runs every aggregate (median of a few); baseline: one
   SELECT count(*) over the same signatures; the aggregates of bot.shell.dashboard are timed
   one by one too (per_day, places, referrals, subscribers);
3. times the hand-in summary page (GET /staff/handin: one GROUP BY over places), against
   the same baseline;
4. times the signatures CSV export, GET /staff/handin/signatures.csv (admin; streamed;
   bot.shell.export.write_signatures in its producer thread) read to /dev/null in a child
   process that reports its peak memory (VmHWM); baselines, each in a child too:
   a bare DB-API cursor over the same SELECT through csv.writer to /dev/null (sqlite3, or
   a psycopg server-side cursor) and, on PostgreSQL, COPY (SELECT ...) TO STDOUT WITH CSV
   to /dev/null; memory baseline: a child that builds the same app and logs in, but
   exports nothing.
The admin's password is stored as a cheap PBKDF2 hash so that no scrypt work (32 MB)
shows in a child's peak memory. Only loopback addresses are used; every child has a
time limit.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from databases import fresh_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_URL = "postgresql+psycopg://127.0.0.1:5432/bench_console"
CONFIG = ROOT / "config.toml"
SLUG = "sirt"
EMAIL = "bench-admin@planets.example"
PASSWORD = "bench console password"
DAYS = 90
CHILD_LIMIT = 600.0  # seconds for any child process


@dataclass(frozen=True)
class Plan:
    signatures: int
    repeats: int  # dashboard requests timed (the median is shown)


FULL = Plan(1_000_000, 5)
QUICK = Plan(100_000, 3)

EXPORT_SELECT = (
    "SELECT s.number, s.name, s.postcode, s.country, s.nation, s.channel, s.referral, "
    "s.signed_at FROM signatures s JOIN petitions p ON p.id = s.petition_id "
    f"WHERE p.slug = '{SLUG}' ORDER BY s.number")


# Realistic places, days, referrals and names ---------------------------------------------------

PLACES: list[tuple[str, int, list[str | None]]] = [
    # nation, signatures per thousand, postcode areas (most populous first)
    ("england", 800, [
        "B", "M", "L", "LS", "S", "BS", "NE", "NG", "LE", "CV", "SO", "PO", "BN", "RG",
        "OX", "CB", "NR", "PL", "EX", "YO", "HU", "DE", "ST", "WV", "BD", "HD", "WF", "SK",
        "WA", "PR", "BB", "BL", "OL", "CR", "SE", "SW", "E", "N", "W", "NW", "EC", "KT",
        "TW", "HA", "UB", "EN", "IG", "RM", "DA", "BR", "SM", "TN", "ME", "CT", "GU", "SL",
        "HP", "MK", "LU", "AL", "SG", "CM", "CO", "IP", "PE", "LN", "DN", "TS", "DL", "SR",
        "DH", "CA", "LA", "FY", "WN", "TF", "HR", "WR", "GL", "BA", "TA", "TR", "DT", "SP",
        "BH"]),
    ("scotland", 90, ["G", "EH", "AB", "DD", "KY", "PA", "FK", "ML", "KA", "IV", "PH", "DG",
                      "KW", "HS", "ZE"]),
    ("wales", 50, ["CF", "SA", "NP", "LL", "SY", "LD"]),
    ("northern_ireland", 30, ["BT"]),
    ("crown_dependencies", 5, ["JE", "GY", "IM"]),
    ("bfpo", 2, ["BFPO"]),
    ("outside_uk", 23, [None]),
]
ABROAD = ["Ireland", "Spain", "France", "Australia", "United States", "Canada", "Germany",
          "New Zealand", "Netherlands", "Portugal"]
CHANNELS = [("sms", 55), ("whatsapp", 25), ("telegram", 20)]  # per hundred
REFERRALS: list[tuple[str | None, int]] = [  # per thousand; "*": a personal share code
    (None, 550), ("fb", 120), ("wa", 100), ("newsletter", 80), ("x", 40), ("leaflet", 30),
    ("insta", 30), ("tiktok", 20), ("clinic", 10), ("*", 20)]
SUBSCRIBED = 35  # per hundred
FIRST = ["Amira", "Ben", "Carys", "Dan", "Erin", "Fiona", "Gareth", "Hannah", "Imran", "Jess",
         "Kieran", "Lucy", "Mohammed", "Niamh", "Owen", "Priya", "Rhys", "Sophie", "Tom",
         "Una", "Vikram", "Wendy", "Yusuf", "Zoe", "Aled", "Bethan", "Callum", "Deborah",
         "Ewan", "Freya", "Graham", "Heather"]
LAST = ["Khan", "Jones", "Evans", "Smith", "Walsh", "Reid", "Williams", "Taylor", "Brown",
        "Davies", "Wilson", "Thomas", "Roberts", "Campbell", "Murphy", "Patel", "Hughes",
        "Wright", "Stewart", "O'Neill", "Kaur", "MacDonald", "Price", "Lewis", "Morgan",
        "Hall", "Clarke", "Ahmed", "Robinson", "Young", "Green", "Edwards"]


def spread(weights: list[tuple[Any, float]], slots: int) -> list[Any]:
    """`slots` values in proportion to their weights (largest remainders)."""
    total = sum(w for _, w in weights)
    exact = [(v, slots * w / total) for v, w in weights]
    counts = [math.floor(x) for _, x in exact]
    order = sorted(range(len(exact)), key=lambda i: exact[i][1] - counts[i], reverse=True)
    for i in order[:slots - sum(counts)]:
        counts[i] += 1
    return [v for (v, _), n in zip(exact, counts, strict=True) for _ in range(n)]


def lookup_rows() -> dict[str, list[tuple[Any, ...]]]:
    places: list[tuple[Any, float]] = []
    for nation, per_mille, areas in PLACES:
        weights = [1 / (i + 1) ** 0.8 for i in range(len(areas))]  # Zipf-like
        for area, w in zip(areas, weights, strict=True):
            places.append(((nation, area), per_mille * w / sum(weights)))
    place_slots = spread(places, 1000)
    day_weights = [(d, 1 + 30 * math.exp(-d / 4) + 12 * math.exp(-((d - 40) / 2.5) ** 2)
                    + (0.4 if d % 7 in (5, 6) else 0)) for d in range(DAYS)]
    return {
        "bench_place": [(k, nation, area, ABROAD[k % len(ABROAD)] if nation == "outside_uk"
                         else None) for k, (nation, area) in enumerate(place_slots)],
        "bench_day": list(enumerate(spread(day_weights, 1000))),
        "bench_ref": list(enumerate(spread(REFERRALS, 1000))),
        "bench_channel": list(enumerate(spread(CHANNELS, 100))),
        "bench_first": list(enumerate(FIRST)),
        "bench_last": list(enumerate(LAST)),
    }


LOOKUP_DDL = {
    "bench_place": "k INTEGER PRIMARY KEY, nation VARCHAR(24), area VARCHAR(4), "
                   "country VARCHAR(60)",
    "bench_day": "k INTEGER PRIMARY KEY, d INTEGER",
    "bench_ref": "k INTEGER PRIMARY KEY, ref VARCHAR(64)",
    "bench_channel": "k INTEGER PRIMARY KEY, channel VARCHAR(16)",
    "bench_first": "k INTEGER PRIMARY KEY, name VARCHAR(40)",
    "bench_last": "k INTEGER PRIMARY KEY, name VARCHAR(40)",
}


# Generating the signatures, set-based -----------------------------------------------------------

def series(dialect: str) -> tuple[str, str]:
    """(WITH prefix, FROM source) giving rows g = :lo .. :hi."""
    if dialect == "postgresql":
        return "", "generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS s(g)"
    return ("WITH RECURSIVE s(g) AS (SELECT :lo UNION ALL SELECT g + 1 FROM s WHERE g < :hi) ",
            "s")


def generate(engine: Any, n: int, petition_id: int, today: dt.date) -> None:
    from sqlalchemy import text

    dialect = engine.dialect.name
    pg = dialect == "postgresql"
    with_, source = series(dialect)
    start = dt.datetime.combine(today - dt.timedelta(days=DAYS - 1), dt.time(), dt.UTC)
    # Two multiplicative hashes of g pick each person's place, day, channel, name...
    hashed = (f"(SELECT g, (g * 2654435761) % 4294967296 AS x, "
              f"(g * 2246822519) % 4294967296 AS y, (g * 3266489917) % 86400 AS sec "
              f"FROM {source}) h")
    if pg:
        text_of = "CAST({} AS text)"
        signed_at = "CAST(:start AS timestamptz) + make_interval(days => d.d, secs => h.sec)"
        phone = "'+447' || lpad(CAST(h.g AS text), 9, '0')"
    else:
        text_of = "CAST({} AS TEXT)"
        signed_at = ("strftime('%Y-%m-%d %H:%M:%S', :start, '+' || d.d || ' days', "
                     "'+' || h.sec || ' seconds') || '.000000'")
        phone = "'+447' || substr('000000000' || h.g, -9, 9)"
    letters = "'ABDEFGHJLNPQRSTUWXYZ'"
    postcode = (
        "CASE WHEN p.area IS NULL THEN NULL "
        f"WHEN p.area = 'BFPO' THEN 'BFPO ' || {text_of.format('h.g % 900 + 100')} "
        f"ELSE p.area || {text_of.format('h.g % 29 + 1')} || ' ' || "
        f"{text_of.format('h.g % 9 + 1')} || substr({letters}, CAST(h.g % 20 AS INTEGER) + 1, 1)"
        f" || substr({letters}, CAST((h.g / 20) % 20 AS INTEGER) + 1, 1) END")
    referral = (f"CASE WHEN r.ref = '*' THEN 'share' || {text_of.format('h.g % 9973')} "
                "ELSE r.ref END")
    joins = ("JOIN bench_place p ON p.k = h.x % 1000 "
             "JOIN bench_day d ON d.k = (h.x / 1000) % 1000 "
             "JOIN bench_ref r ON r.k = (h.x / 1000000) % 1000 "
             "JOIN bench_channel c ON c.k = h.y % 100 "
             "JOIN bench_first f ON f.k = (h.y / 100) % 32 "
             "JOIN bench_last l ON l.k = (h.y / 3200) % 32")
    address = f"CASE WHEN c.channel = 'telegram' THEN {text_of.format('1000000000 + h.g')} " \
              f"ELSE {phone} END"
    statements = [
        # The petition's signatures, with their people.
        f"{with_}INSERT INTO supporters (id, phone, created_at) "
        f"SELECT h.g, CASE WHEN c.channel = 'telegram' THEN NULL ELSE {phone} END, "
        f"{signed_at} FROM {hashed} {joins}",
        f"{with_}INSERT INTO identities (id, supporter_id, channel, address, last_inbound_at, "
        f"created_at) SELECT h.g, h.g, c.channel, {address}, {signed_at}, {signed_at} "
        f"FROM {hashed} {joins}",
        f"{with_}INSERT INTO signatures (id, petition_id, supporter_id, number, name, postcode, "
        f"postcode_area, country, nation, channel, referral, signed_at) "
        f"SELECT h.g, :petition, h.g, h.g, f.name || ' ' || l.name, {postcode}, p.area, "
        f"p.country, p.nation, c.channel, {referral}, {signed_at} FROM {hashed} {joins}",
        f"{with_}INSERT INTO subscriptions (id, identity_id, petition_id, created_at) "
        f"SELECT h.g, h.g, :petition, {signed_at} FROM {hashed} {joins} "
        f"WHERE (h.y / 320000) % 100 < {SUBSCRIBED}",
        # The counters the dashboard and the bot read (the bot keeps them in step).
        "UPDATE petitions SET signature_count = (SELECT count(*) FROM signatures WHERE "
        "petition_id = :petition), last_number = (SELECT max(number) FROM signatures WHERE "
        "petition_id = :petition) WHERE id = :petition",
        "UPDATE channel_counts SET count = (SELECT count(*) FROM signatures s WHERE "
        "s.petition_id = channel_counts.petition_id AND s.channel = channel_counts.channel) "
        "WHERE petition_id = :petition",
    ]
    params = {"lo": 1, "hi": n, "petition": petition_id,
              "start": start if pg else start.strftime("%Y-%m-%d %H:%M:%S")}
    rows = lookup_rows()
    with engine.begin() as connection:
        for table, ddl in LOOKUP_DDL.items():
            connection.execute(text(f"CREATE TABLE {table} ({ddl})"))
            width = len(rows[table][0])
            marks = ", ".join(f":c{i}" for i in range(width))
            connection.execute(text(f"INSERT INTO {table} VALUES ({marks})"),
                               [{f"c{i}": v for i, v in enumerate(row)} for row in rows[table]])
        for sql in statements:
            used = {k: v for k, v in params.items() if f":{k}" in sql}
            connection.execute(text(sql), used)
        for table in LOOKUP_DDL:
            connection.execute(text(f"DROP TABLE {table}"))
    if pg:
        with engine.begin() as connection:
            for table in ("supporters", "identities", "signatures", "subscriptions"):
                connection.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))
        with engine.connect() as connection:  # as autovacuum would after a bulk load
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE"))


def add_admin(sessions: Any) -> None:
    from werkzeug.security import generate_password_hash

    from models import StaffUser

    with sessions.begin() as session:
        session.add(StaffUser(email=EMAIL, role="admin", active=True,
                              created_at=dt.datetime.now(dt.UTC),
                              password_hash=generate_password_hash(
                                  PASSWORD, method="pbkdf2:sha256:1000")))


# The app, as staff use it ------------------------------------------------------------------------

def make_app(url: str) -> Any:
    from bot.infra.settings import Settings
    from webhooks import create_app

    app = create_app(Settings(database_url=url, config_path=str(CONFIG),
                              public_base_url="http://localhost",
                              secret_key="bench-console-secret"))
    app.config.update(WTF_CSRF_ENABLED=False, STAFF_CACHE_SECONDS=0)
    return app


def logged_in(app: Any) -> Any:
    client = app.test_client()
    response = client.post("/staff/login", data={"email": EMAIL, "password": PASSWORD})
    if response.status_code != 302:
        raise RuntimeError(f"login failed: {response.status_code}")
    return client


def get_page(client: Any, path: str, must_contain: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    seconds = time.perf_counter() - started
    page = response.get_data(as_text=True)
    if response.status_code != 200 or must_contain not in page:
        raise RuntimeError(f"GET {path}: {response.status_code}, {must_contain!r} missing")
    return seconds


def median_of(repeats: int, fn: Callable[[], float]) -> float:
    fn()  # warm: templates compiled, pages cached by the database
    return statistics.median(fn() for _ in range(repeats))


def count_baseline(engine: Any, petition_id: int, repeats: int) -> tuple[float, int]:
    from sqlalchemy import text

    found = 0

    def once() -> float:
        nonlocal found
        started = time.perf_counter()
        with engine.connect() as connection:
            found = connection.execute(text(
                "SELECT count(*) FROM signatures WHERE petition_id = :p"),
                {"p": petition_id}).scalar_one()
        return time.perf_counter() - started

    return median_of(repeats, once), found


# Child processes: an export each, with its peak memory ------------------------------------------

def child_main(args: argparse.Namespace) -> int:
    """`--child export|cursor|copy|idle`: print {"seconds", "rows", "bytes", "maxrss_kb"}."""
    result: dict[str, Any] = {"seconds": 0.0, "rows": 0, "bytes": 0}
    with open(os.devnull, "wb") as sink:
        if args.child in ("export", "idle"):
            app = make_app(args.url)
            client = logged_in(app)
            if args.child == "export":
                result.update(app_export(client, sink))
            app.extensions["petitionbot"].engine.dispose()
        elif args.child == "cursor":
            result.update(bare_cursor(args.url, sink))
        elif args.child == "copy":
            result.update(bare_copy(args.url, sink))
    result["maxrss_kb"] = peak_rss_kb()
    print(json.dumps(result))
    return 0


def peak_rss_kb() -> int:
    """This process's peak resident memory since exec (VmHWM). Not ru_maxrss: on Linux
    that keeps the high-water mark of the parent the child was forked from."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def app_export(client: Any, sink: BinaryIO) -> dict[str, Any]:
    """The admin's download, read as the browser would, into /dev/null."""
    started = time.perf_counter()
    response = client.get(f"/staff/handin/signatures.csv?petition={SLUG}")
    if response.status_code != 200 or not response.is_streamed:
        raise RuntimeError(f"export answered {response.status_code}")
    size = lines = 0
    try:
        for chunk in response.iter_encoded():
            sink.write(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
    finally:
        response.close()
    return {"seconds": time.perf_counter() - started, "rows": lines - 1, "bytes": size}


class _Counting:
    """A text sink for csv.writer: counts and encodes what it is given into /dev/null."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode()
        self.size += len(data)
        return self.sink.write(data)


def bare_cursor(url: str, sink: BinaryIO) -> dict[str, Any]:
    """The same SELECT through a plain DB-API cursor and csv.writer."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    out = _Counting(sink)
    writer = csv.writer(out)
    writer.writerow(("number", "name", "postcode", "country", "nation", "channel", "referral",
                     "signed_at"))
    rows = 0
    started = time.perf_counter()
    if parsed.get_backend_name() == "sqlite":
        import sqlite3

        connection = sqlite3.connect(parsed.database or "")
        try:
            cursor = connection.execute(EXPORT_SELECT)
            while batch := cursor.fetchmany(2000):
                writer.writerows(batch)
                rows += len(batch)
        finally:
            connection.close()
    else:
        import psycopg

        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as connection, connection.cursor(name="bench") as cursor:
            cursor.itersize = 2000
            cursor.execute(EXPORT_SELECT)
            while batch := cursor.fetchmany(2000):
                writer.writerows(batch)
                rows += len(batch)
    return {"seconds": time.perf_counter() - started, "rows": rows, "bytes": out.size}


def bare_copy(url: str, sink: BinaryIO) -> dict[str, Any]:
    """PostgreSQL writes the CSV itself: COPY (the same SELECT) TO STDOUT."""
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    size = lines = 0
    started = time.perf_counter()
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor, cursor.copy(
            f"COPY ({EXPORT_SELECT}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
        for data in copy:
            chunk = bytes(data)
            sink.write(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
    return {"seconds": time.perf_counter() - started, "rows": lines - 1, "bytes": size}


def run_child(kind: str, url: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--url", url],
                          capture_output=True, text=True, timeout=CHILD_LIMIT, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# One database ------------------------------------------------------------------------------------

@dataclass
class Result:
    db: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measure: str, product: str, baseline: str) -> None:
        self.rows.append((measure, product, baseline))
        print(f"  {self.db}: {measure}: {product}  (baseline {baseline})", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def run_database(kind: str, plan: Plan, args: argparse.Namespace, workdir: Path) -> Result:
    import zoneinfo

    from bot.infra.config import load_config
    from bot.shell import dashboard
    from bot.shell.service import Service
    from models.db import make_engine, make_sessions

    result = Result(kind)
    print(f"{kind}:", flush=True)
    url = fresh_database(kind, workdir, args.pg_url, "bench-console")
    engine = make_engine(url)
    sessions = make_sessions(engine)
    config = load_config(CONFIG)
    Service(config, sessions).sync_petitions()
    add_admin(sessions)
    with sessions() as session:
        pid = dashboard.petition_id(session, SLUG)
    assert pid is not None
    today = dt.datetime.now(zoneinfo.ZoneInfo(config.broadcast.timezone)).date()
    started = time.perf_counter()
    generate(engine, plan.signatures, pid, today)
    result.notes.append(f"generated {plan.signatures:,} supporters, identities and signatures "
                        f"set-based in {time.perf_counter() - started:,.1f} s")
    print(f"  {kind}: {result.notes[-1]}", flush=True)

    baseline, counted = count_baseline(engine, pid, plan.repeats)
    assert counted == plan.signatures, counted
    count_text = f"SELECT count(*) {ms(baseline)}"

    # The dashboard, as an admin's browser gets it.
    app = make_app(url)
    client = logged_in(app)
    here = f"{plan.signatures:,} here"
    for days in (60, 365):
        seconds = median_of(plan.repeats, lambda d=days: get_page(
            client, f"/staff/?days={d}", here))
        result.add(f"dashboard GET /staff/?days={days} (median of {plan.repeats})",
                   ms(seconds), f"{count_text} ({seconds / baseline:,.0f}x)")
    with sessions() as session:
        parts = {
            "per_day (60 days)": lambda: dashboard.per_day(
                session, pid, today - dt.timedelta(days=59), today, config.broadcast.timezone),
            "places": lambda: dashboard.places(session, pid),
            "referrals": lambda: dashboard.referrals(session, pid),
            "subscribers": lambda: dashboard.subscribers(session, pid),
            "totals (counters)": lambda: dashboard.totals(session, config, SLUG),
        }
        timings = []
        for name, fn in parts.items():
            def once(fn: Callable[[], Any] = fn) -> float:
                begun = time.perf_counter()
                fn()
                return time.perf_counter() - begun

            timings.append(f"{name} {ms(median_of(plan.repeats, once))}")
    result.notes.append("dashboard aggregates (bot.shell.dashboard, median): " + ", ".join(timings))
    print(f"  {kind}: {result.notes[-1]}", flush=True)
    seconds = median_of(plan.repeats, lambda: get_page(client, "/staff/handin", "By postcode"))
    result.add(f"hand-in page GET /staff/handin (median of {plan.repeats})", ms(seconds),
               f"{count_text} ({seconds / baseline:,.0f}x)")
    app.extensions["petitionbot"].engine.dispose()
    engine.dispose()

    # The export, each in a child process of its own (for its peak memory).
    export = run_child("export", url)
    assert export["rows"] == plan.signatures, export
    cursor = run_child("cursor", url)
    assert cursor["rows"] == plan.signatures, cursor
    idle = run_child("idle", url)

    def rate(r: dict[str, Any]) -> str:
        return (f"{ms(r['seconds'])}, {r['rows'] / r['seconds']:,.0f} rows/s, "
                f"{r['bytes'] / 1e6:,.0f} MB")

    bare = "sqlite3 cursor" if kind == "sqlite" else "psycopg server-side cursor"
    result.add(f"CSV export GET /staff/handin/signatures.csv, {plan.signatures:,} rows",
               rate(export), f"{bare} + csv.writer {rate(cursor)} "
               f"({export['seconds'] / cursor['seconds']:,.1f}x)")
    if kind == "postgresql":
        copied = run_child("copy", url)
        assert copied["rows"] == plan.signatures, copied
        result.add("  (the same export)", "", f"COPY TO STDOUT {rate(copied)} "
                   f"({export['seconds'] / copied['seconds']:,.1f}x)")
    mb = 1024
    result.add("peak memory (VmHWM) of the export's process",
               f"{export['maxrss_kb'] / mb:,.0f} MB",
               f"same app logged in, no export {idle['maxrss_kb'] / mb:,.0f} MB "
               f"(+{(export['maxrss_kb'] - idle['maxrss_kb']) / mb:,.0f} MB); {bare} "
               f"{cursor['maxrss_kb'] / mb:,.0f} MB")
    return result


# The table ---------------------------------------------------------------------------------------

def report(results: list[Result], mode: str, elapsed: float, load: str) -> str:
    lines = ["", f"petitionbot console benchmark ({mode}); {os.cpu_count()} CPUs; total "
             f"{elapsed:.0f} s; load average before/after {load} / {_loadavg()}", ""]
    widths = (62, 40, 70)
    header = ("measure", "product", "baseline (same run)")
    for r in results:
        lines.append(f"[{r.db}]")
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines.append("-" * (sum(widths) + 4))
        for row in r.rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                         .rstrip())
        for note in r.notes:
            lines.append(f"  - {note}")
        lines.append("")
    return "\n".join(lines)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK.signatures:,} signatures instead of {FULL.signatures:,}")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL", PG_URL),
                        help=f"loopback PostgreSQL database to wipe and use (default {PG_URL})")
    parser.add_argument("--child", choices=["export", "cursor", "copy", "idle"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    plan = QUICK if args.quick else FULL
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    load = _loadavg()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="petitionbot-bench-console-") as tmp:
        for kind in kinds:
            results.append(run_database(kind, plan, args, Path(tmp)))
    print(report(results, "quick" if args.quick else "full", time.perf_counter() - started,
                 load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
