"""A baseline for bench/inbound.py: a minimal implementation of the SMS signing path.

    gunicorn -c gunicorn.conf.py 'bench.floor_app:create_app()'   (after prepare(url))

Per message it does what any implementation has to, as directly as it can, and nothing
else: Twilio's signature checked, the sender's number normalised, one transaction on the
driver's connection (the sender's row locked, the MessageSid recorded once, the sender
created, a consent record, the counters and the signature at signing, the step saved),
the greeting's count cached for a second, a state machine that knows only the bench's
seven messages, TwiML, one log line. No keywords, input cleaning, config texts, other
channels, reply budget or metrics: so floor/bare is about as far as any implementation
can get on this machine, and product/floor what the product's features cost. It imports
nothing of the product. Its tables are its own: `floor_*` in the PostgreSQL database, or
a SQLite file beside the product's (`<database>-floor.db`).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import phonenumbers
from flask import Flask, Response, abort, jsonify, request

log = logging.getLogger("petitionbot.floor")

EXTERNAL = 49_257
COUNT_TTL = 1.0  # seconds the greeting's count may be old (the product's COUNTS_TTL)
TABLES = (
    "CREATE TABLE floor_inbound (sid VARCHAR(40) PRIMARY KEY, person_id BIGINT, "
    "received_at VARCHAR(32))",
    "CREATE TABLE floor_people (id {serial} PRIMARY KEY, phone VARCHAR(20) UNIQUE, "
    "step VARCHAR(16), data TEXT, created_at VARCHAR(32))",
    "CREATE TABLE floor_petition (id INTEGER PRIMARY KEY, count INTEGER, sms INTEGER)",
    "CREATE TABLE floor_signatures (id {serial} PRIMARY KEY, person_id BIGINT UNIQUE, "
    "name TEXT, postcode VARCHAR(10), number INTEGER, signed_at VARCHAR(32))",
    "CREATE TABLE floor_consents (id {serial} PRIMARY KEY, person_id BIGINT, "
    "purpose VARCHAR(10), version VARCHAR(10), evidence VARCHAR(40), at VARCHAR(32))",
    "INSERT INTO floor_petition (id, count, sms) VALUES (1, 0, 0)",
)


def sqlite_path(url: str) -> str:
    """Beside the product's file (bench/harness.py's plain `sqlite:///<path>` URLs)."""
    return url.removeprefix("sqlite:///") + "-floor.db"


def pg_dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def prepare(url: str) -> None:
    """The floor app's tables, in a fresh database, before its workers start."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(sqlite_path(url), isolation_level=None)) as c:
            c.execute("PRAGMA journal_mode=WAL")
            for statement in TABLES:
                c.execute(statement.format(serial="INTEGER"))
        return
    import psycopg

    with psycopg.connect(pg_dsn(url), autocommit=True) as c:
        for statement in TABLES:
            c.execute(statement.format(serial="BIGSERIAL"))


class Database:
    """SQLite: one connection, one message at a time (as the product's turns). PostgreSQL:
    a connection per thread, the sender's row locked FOR UPDATE."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        self.url = url
        self.local = threading.local()
        self.lock: Any = threading.Lock() if self.sqlite else contextlib.nullcontext()
        self.count = (0.0, 0)  # (read at, signatures): see COUNT_TTL
        self.begin = "BEGIN IMMEDIATE" if self.sqlite else "BEGIN"
        self.find = self.sql("SELECT id, step, data FROM floor_people WHERE phone = ?"
                             + ("" if self.sqlite else " FOR UPDATE"))
        if self.sqlite:
            self.conn: Any = sqlite3.connect(sqlite_path(url), isolation_level=None,
                                             check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=30000")

    def connection(self) -> Any:
        if self.sqlite:
            return self.conn
        conn = getattr(self.local, "conn", None)
        if conn is None:
            import psycopg

            conn = self.local.conn = psycopg.connect(pg_dsn(self.url), autocommit=True)
        return conn

    def drop(self) -> None:
        """After an error: a PostgreSQL connection may be broken, so the next one is new."""
        conn = None if self.sqlite else getattr(self.local, "conn", None)
        if conn is not None:
            self.local.conn = None
            with contextlib.suppress(Exception):
                conn.close()

    def sql(self, statement: str) -> str:
        return statement if self.sqlite else statement.replace("?", "%s")


def create_app() -> Flask:
    url = os.environ["DATABASE_URL"]
    token = os.environ["TWILIO_AUTH_TOKEN"]
    base = os.environ["PUBLIC_BASE_URL"].rstrip("/")
    db = Database(url)
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", database="ok")

    @app.post("/twilio/messages")
    def messages() -> Response:
        pairs = parse_qsl(request.get_data(cache=False).decode(), keep_blank_values=True)
        signed = base + request.path + "".join(k + v for k, v in sorted(pairs))
        expected = base64.b64encode(hmac.digest(token.encode(), signed.encode(), "sha1"))
        if not hmac.compare_digest(expected, request.headers.get("X-Twilio-Signature",
                                                                 "").encode()):
            abort(403)
        form = dict(pairs)
        sid, text = form["MessageSid"], form.get("Body", "").strip()
        try:
            phone = phonenumbers.format_number(phonenumbers.parse(form["From"], "GB"),
                                               phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            abort(400)
        now = datetime.now(UTC).isoformat()
        with db.lock:
            conn = db.connection()
            try:
                conn.execute(db.begin)
                replies, person, step = turn(db, conn, sid, phone, text, now)
                conn.execute("COMMIT")
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    db.drop()
                raise
        log.info("inbound channel=sms person=%s step=%s replies=%d", person, step,
                 len(replies))
        body = "".join(f"<Message>{escape(reply)}</Message>" for reply in replies)
        return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
                        mimetype="text/xml")

    return app


def turn(db: Database, conn: Any, sid: str, phone: str, text: str,
         now: str) -> tuple[list[str], int | None, str]:
    """One message's effects and replies, inside the caller's transaction."""
    q = db.sql
    row = conn.execute(db.find, (phone,)).fetchone()
    if conn.execute(q("INSERT INTO floor_inbound (sid, person_id, received_at) VALUES (?, ?, ?) "
                      "ON CONFLICT DO NOTHING"), (sid, row and row[0], now)).rowcount == 0:
        return [], None, "duplicate"
    if row is None:
        person = conn.execute(q("INSERT INTO floor_people (phone, step, data, created_at) "
                                "VALUES (?, 'new', '{}', ?) RETURNING id"),
                              (phone, now)).fetchone()[0]
        conn.execute(q("UPDATE floor_inbound SET person_id = ? WHERE sid = ?"), (person, sid))
        step, data = "new", {}
    else:
        person, step, data = row[0], row[1], json.loads(row[2])
    word = text.upper()
    replies: list[str] = []
    if step == "new":
        read_at, count = db.count
        if time.monotonic() - read_at > COUNT_TTL:
            count = conn.execute("SELECT count FROM floor_petition WHERE id = 1").fetchone()[0]
            db.count = (time.monotonic(), count)
        replies.append(f"Fund SIRT for NET patients: {count + EXTERNAL:,} people have "
                       "signed. Reply SIGN to sign, MORE to read more.")
        step = "greeted"
    elif step == "greeted" and word == "SIGN":
        replies.append("Are you 16 or over, and happy for us to keep your name and postcode "
                       "with your signature? Reply 1 YES or 2 NO")
        step = "consent"
    elif step == "consent" and word == "YES":
        conn.execute(q("INSERT INTO floor_consents (person_id, purpose, version, evidence, "
                       "at) VALUES (?, 'sign', 'v1', ?, ?)"), (person, sid, now))
        replies.append("What is your full name?")
        step = "name"
    elif step == "name":
        data["name"] = text[:100]
        replies.append("What is your postcode?")
        step = "postcode"
    elif step == "postcode":
        data["postcode"] = word[:10]
        replies.append(f"Sign as {data['name']}, {data['postcode']}? Reply 1 YES or 2 EDIT")
        step = "review"
    elif step == "review" and word == "YES":
        number = conn.execute("UPDATE floor_petition SET count = count + 1, sms = sms + 1 "
                              "WHERE id = 1 RETURNING count").fetchone()[0]
        conn.execute(q("INSERT INTO floor_signatures (person_id, name, postcode, number, "
                       "signed_at) VALUES (?, ?, ?, ?, ?)"),
                     (person, data["name"], data["postcode"], number, now))
        replies.append(f"Thank you, {data['name']}, you have signed! You are supporter "
                       f"number {number}.")
        replies.append("Would you like updates about this campaign? Reply 1 YES or 2 NO")
        step = "updates"
    elif step == "updates":
        replies.append("Thank you. Reply STOP at any time.")
        step = "done"
    else:
        replies.append("Sorry, I did not understand that. Reply HELP for help.")
    conn.execute(q("UPDATE floor_people SET step = ?, data = ? WHERE id = ?"),
                 (step, json.dumps(data), person))
    return replies, person, step
