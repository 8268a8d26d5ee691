"""Staff console speed: the dashboard and the hand-in export at 1,000,000 signatures.

    .venv/bin/python bench/console.py            # 1,000,000 signatures: a few minutes
    .venv/bin/python bench/console.py --quick    # 100,000 signatures: under a minute

For each database (SQLite in a temporary folder, then PostgreSQL on loopback) the
signatures are generated set-based, spread as a real campaign's are: over the UK nations
and their postcode areas (most populous first), the Crown dependencies, BFPO and abroad;
SMS 55%, WhatsApp 25%, Telegram 20%; over 90 days with a launch spike, a press spike and
a tail; 45% with a referral, 35% subscribed. Then, each beside a baseline from this run:
1. the dashboard as an admin gets it, GET /staff/ (60 days, then 365), through the Flask
   test client with the figures cache off (median of a few); baseline: SELECT count(*)
   over the same signatures;
2. the hand-in page, GET /staff/handin, against the same baseline;
3. the signatures CSV, GET /staff/handin/signatures.csv, read to /dev/null in a process
   of its own; baseline: the same SELECT through a bare DB-API cursor and csv.writer;
   and that process's peak memory against one that logs in and exports nothing.
The admin's password is a cheap PBKDF2 hash, so no scrypt work (32 MB) shows in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import harness

sys.path.insert(0, str(harness.ROOT))

CONFIG = harness.ROOT / "config.toml"
SLUG = "sirt"
EMAIL = "bench-admin@planets.example"
PASSWORD = "bench console password"
DAYS = 90


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

def generate(engine: Any, n: int, petition_id: int, today: dt.date) -> None:
    from sqlalchemy import text

    dialect = engine.dialect.name
    pg = dialect == "postgresql"
    with_, source = harness.series(dialect)
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
    harness.after_bulk_load(engine, ("supporters", "identities", "signatures",
                                     "subscriptions"))


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

def child_main(kind: str, url: str) -> int:
    """`--child export|cursor|idle URL`: print {"seconds", "rows", "bytes", "mb"}."""
    result: dict[str, Any] = {"seconds": 0.0, "rows": 0, "bytes": 0}
    with open(os.devnull, "wb") as sink:
        if kind == "cursor":
            result.update(bare_cursor(url, sink))
        else:
            app = make_app(url)
            client = logged_in(app)
            if kind == "export":
                result.update(app_export(client, sink))
            app.extensions["petitionbot"].engine.dispose()
    print(json.dumps({**result, "mb": harness.peak_mb()}))
    return 0


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


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def run_database(kind: str, plan: Plan, pg_url: str, workdir: Path) -> harness.Result:
    import zoneinfo

    result = harness.Result(kind)
    print(f"{kind}:", flush=True)
    url, engine, sessions, config, pid = harness.product_database(kind, workdir, pg_url)
    add_admin(sessions)
    today = dt.datetime.now(zoneinfo.ZoneInfo(config.broadcast.timezone)).date()
    started = time.perf_counter()
    generate(engine, plan.signatures, pid, today)
    result.notes.append(f"generated {plan.signatures:,} supporters, identities and signatures "
                        f"set-based in {time.perf_counter() - started:,.1f} s")
    baseline, counted = count_baseline(engine, pid, plan.repeats)
    assert counted == plan.signatures, counted
    count_text = f"SELECT count(*) {ms(baseline)}"

    app = make_app(url)
    client = logged_in(app)
    pages = [(f"/staff/?days={days}", f"{plan.signatures:,} here") for days in (60, 365)]
    for path, must_contain in (*pages, ("/staff/handin", "By postcode")):
        seconds = median_of(plan.repeats, lambda p=path, m=must_contain: get_page(client, p, m))
        result.add(f"GET {path} (median of {plan.repeats})", ms(seconds),
                   f"{count_text} ({seconds / baseline:,.0f}x)")
    app.extensions["petitionbot"].engine.dispose()
    engine.dispose()

    export, cursor, idle = (harness.run_child(__file__, kind, url) for kind in (
        "export", "cursor", "idle"))
    assert export["rows"] == cursor["rows"] == plan.signatures, (export, cursor)

    def rate(r: dict[str, Any]) -> str:
        return (f"{ms(r['seconds'])}, {r['rows'] / r['seconds']:,.0f} rows/s, "
                f"{r['bytes'] / 1e6:,.0f} MB")

    bare = "sqlite3 cursor" if kind == "sqlite" else "psycopg server-side cursor"
    result.add(f"CSV export, GET /staff/handin/signatures.csv, {plan.signatures:,} rows",
               rate(export), f"{bare} + csv.writer {rate(cursor)} "
               f"({export['seconds'] / cursor['seconds']:,.1f}x)")
    result.add("peak memory of the export's process", f"{export['mb']:,.0f} MB",
               f"logged in, no export {idle['mb']:,.0f} MB; {bare} {cursor['mb']:,.0f} MB")
    return result


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child_main(*sys.argv[2:4])
    args = harness.options(__doc__ or "", "bench_console").parse_args()
    plan = QUICK if args.quick else FULL
    harness.run(args, "console", lambda kind, tmp: run_database(kind, plan, args.pg_url, tmp),
                f"; {plan.signatures:,} signatures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
