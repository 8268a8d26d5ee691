"""The signatures feed (issue #16): GET /api/v1/signatures paged to the end at 1,000,000.

    .venv/bin/python bench/feed.py            # 1,000,000 signatures: a few minutes
    .venv/bin/python bench/feed.py --quick    # 100,000 signatures: under a minute

For each database (SQLite in a temporary folder, then PostgreSQL on loopback, each made for
the run and dropped after) the signatures are generated set-based as bench/console.py makes
them (a real campaign's spread of places, channels and days). Then, each in a process of
its own so that its peak memory is its own:
1. the product: an admin's API token pages through the whole feed through the Flask app
   (test client, in-process: the app's streaming generator does all the work), at the
   largest page (limit=10000), each page's body read as it streams and its `next` taken
   from the body's end;
2. the baseline: the same rows read with one plain SELECT ... ORDER BY number through the
   driver (a sqlite3 cursor; a psycopg server-side cursor), each row serialised to JSON
   with the same fields;
3. idle: the app built and the token checked once, no paging (the memory floor).
It prints rows/s for both and the ratio, and each process's peak resident memory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import console
import harness

sys.path.insert(0, str(harness.ROOT))

SLUG = "sirt"
EMAIL = "bench-feed-admin@planets.example"
API = "https://petition.example.org"
PAGE = 10_000  # the feed's largest page
TAIL = 600  # bytes at a page's end that hold `next` and `resume`
FEED_SELECT = (
    "SELECT s.id, s.number, s.supporter_id, s.name, s.postcode, s.country, s.nation, "
    "s.channel, s.referral, s.signed_at FROM signatures s JOIN petitions p "
    f"ON p.id = s.petition_id WHERE p.slug = '{SLUG}' ORDER BY s.number")
FIELDS = ("id", "number", "supporter", "name", "postcode", "country", "nation", "channel",
          "referral", "signed_at")
FULL, QUICK = 1_000_000, 100_000


def make_app(url: str) -> Any:
    from bot.infra.settings import Settings
    from webhooks import create_app

    return create_app(Settings(database_url=url, config_path=str(console.CONFIG),
                               public_base_url=API, secret_key="bench-feed-secret"))


def issue_token(sessions: Any) -> str:
    """An admin, and an API token of theirs."""
    from bot.shell import api_tokens
    from models import StaffUser

    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        admin = StaffUser(email=EMAIL, role="admin", active=True, created_at=now,
                          password_hash="!bench: no password, a token only")
        session.add(admin)
        session.flush()
        return api_tokens.issue(session, admin, "bench feed", now).secret


# Child processes: one reading each, with its peak memory ------------------------------------

def child_main(kind: str, url: str, token: str) -> int:
    """`--child feed|baseline|idle URL TOKEN`: print {"seconds", "rows", "bytes", "pages",
    "mb"}."""
    result: dict[str, Any] = {"seconds": 0.0, "rows": 0, "bytes": 0, "pages": 0}
    with open(os.devnull, "wb") as sink:
        if kind == "baseline":
            result.update(baseline(url, sink))
        else:
            app = make_app(url)
            client = app.test_client()
            if kind == "feed":
                result.update(page_through(client, token, sink))
            else:  # idle: the app and one refused request, so the same code is loaded
                client.get(f"/api/v1/signatures?petition={SLUG}&limit=0", base_url=API,
                           headers={"Authorization": f"Bearer {token}"}).close()
            app.extensions["petitionbot"].engine.dispose()
    print(json.dumps({**result, "mb": harness.peak_mb()}))
    return 0


def page_through(client: Any, token: str, sink: BinaryIO) -> dict[str, Any]:
    """Every page from the start, as an integration reads them, into /dev/null."""
    headers = {"Authorization": f"Bearer {token}"}
    after = ""
    rows = size = pages = 0
    started = time.perf_counter()
    while True:
        response = client.get(f"/api/v1/signatures?petition={SLUG}&limit={PAGE}{after}",
                              base_url=API, headers=headers)
        if response.status_code != 200 or not response.is_streamed:
            raise RuntimeError(f"the feed answered {response.status_code}: "
                               f"{response.get_data(as_text=True)[:300]}")
        tail = b""
        try:
            for chunk in response.iter_encoded():
                sink.write(chunk)
                size += len(chunk)
                rows += chunk.count(b'"number": ')
                tail = (tail + chunk)[-TAIL:]
        finally:
            response.close()
        pages += 1
        ending = json.loads(_ending(tail))
        if ending["next"] is None:
            break
        after = f"&after={ending['next']}"
    return {"seconds": time.perf_counter() - started, "rows": rows, "bytes": size,
            "pages": pages}


def _ending(tail: bytes) -> str:
    """`{"next": ..., "resume": ...}` from the end of a page's body."""
    return "{" + tail.decode().rsplit("], ", 1)[1]


def baseline(url: str, sink: BinaryIO) -> dict[str, Any]:
    """The same rows through a plain DB-API cursor, each serialised to JSON."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    rows = size = 0
    started = time.perf_counter()

    def write(batch: list[Any]) -> None:
        nonlocal rows, size
        for row in batch:
            item = dict(zip(FIELDS, row, strict=True))
            at = item["signed_at"]
            item["signed_at"] = at if isinstance(at, str) else at.isoformat()
            data = json.dumps(item, ensure_ascii=False).encode()
            size += sink.write(data)
        rows += len(batch)

    if parsed.get_backend_name() == "sqlite":
        import sqlite3

        connection = sqlite3.connect(parsed.database or "")
        try:
            cursor = connection.execute(FEED_SELECT)
            while batch := cursor.fetchmany(2000):
                write(batch)
        finally:
            connection.close()
    else:
        import psycopg

        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as connection, connection.cursor(name="bench") as cursor:
            cursor.itersize = 2000
            cursor.execute(FEED_SELECT)
            while batch := cursor.fetchmany(2000):
                write(batch)
    return {"seconds": time.perf_counter() - started, "rows": rows, "bytes": size}


# One database -------------------------------------------------------------------------------

def run_database(kind: str, signatures: int, pg_url: str, workdir: Path) -> harness.Result:
    import zoneinfo

    result = harness.Result(kind)
    print(f"{kind}:", flush=True)
    url, engine, sessions, config, pid = harness.product_database(kind, workdir, pg_url)
    token = issue_token(sessions)
    today = dt.datetime.now(zoneinfo.ZoneInfo(config.broadcast.timezone)).date()
    started = time.perf_counter()
    console.generate(engine, signatures, pid, today)
    result.notes.append(f"generated {signatures:,} supporters, identities and signatures "
                        f"set-based in {time.perf_counter() - started:,.1f} s")
    engine.dispose()
    try:
        feed, plain, idle = (harness.run_child(__file__, child, url, token, timeout=1800)
                             for child in ("feed", "baseline", "idle"))
    finally:
        drop(kind, url)
    assert feed["rows"] == plain["rows"] == signatures, (feed, plain)

    def rate(r: dict[str, Any]) -> float:
        return float(r["rows"] / r["seconds"])

    bare = "sqlite3 cursor" if kind == "sqlite" else "psycopg server-side cursor"
    result.add(f"feed, {feed['pages']} pages of {PAGE:,} ({signatures:,} rows)",
               f"{rate(feed):,.0f} rows/s ({feed['seconds']:,.1f} s, "
               f"{feed['bytes'] / 1e6:,.0f} MB)",
               f"{bare} + json.dumps {rate(plain):,.0f} rows/s ({plain['seconds']:,.1f} s); "
               f"product/baseline {rate(feed) / rate(plain):.2f}")
    result.add("peak memory of the reading process", f"{feed['mb']:,.0f} MB",
               f"app loaded, no paging {idle['mb']:,.0f} MB; {bare} {plain['mb']:,.0f} MB")
    return result


def drop(kind: str, url: str) -> None:
    """The run's database, gone (SQLite's file goes with the temporary folder)."""
    if kind != "postgresql":
        return
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(False), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child_main(*sys.argv[2:5])
    args = harness.options(__doc__ or "", "bench_feed").parse_args()
    signatures = QUICK if args.quick else FULL
    harness.run(args, "feed", lambda kind, tmp: run_database(kind, signatures, args.pg_url, tmp),
                f"; {signatures:,} signatures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
