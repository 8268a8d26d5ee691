"""Engines and sessions: SQLite tuned for a web server, PostgreSQL as it is."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

LOCK_TIMEOUT = 30.0


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys, a busy timeout, BEGIN IMMEDIATE."""
    parsed = make_url(url)
    # Statement parameters (names, phone numbers) stay out of error messages and tracebacks.
    kwargs.setdefault("hide_parameters", True)
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No pre-ping (a round trip per transaction): a dropped connection fails one request
        # with a 503, which the provider retries; recycling keeps connections fresh.
        kwargs.setdefault("pool_recycle", 1800)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 10)
        return create_engine(url, **kwargs)
    if parsed.database in (None, "", ":memory:"):
        raise ValueError("use a file for SQLite: several threads and processes share it")
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
    writer = threading.Lock()
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", lambda connection: _sqlite_begin(connection, writer))
    event.listen(engine.pool, "checkin", _sqlite_checkin)
    event.listen(engine.pool, "invalidate", lambda c, record, _e: _sqlite_checkin(c, record))
    event.listen(engine.pool, "detach", _sqlite_checkin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any, writer: threading.Lock) -> None:
    # Take the write lock up front: a read lock upgraded later can fail with SQLITE_BUSY
    # without waiting, and every inbound message writes. Threads of one process queue on
    # a Python lock first, because SQLite's own busy handler waits by sleeping; the lock
    # is held until the connection is back in the pool, after its COMMIT or ROLLBACK.
    if "writer" not in connection.info:
        if not writer.acquire(timeout=LOCK_TIMEOUT):
            raise OperationalError("BEGIN IMMEDIATE", None, TimeoutError("database is busy"))
        connection.info["writer"] = writer
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_checkin(_dbapi_connection: Any, record: Any) -> None:
    writer = record.info.pop("writer", None)
    if writer is not None:
        writer.release()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """The one session factory; callers own the transaction (`with sessions.begin()`)."""
    return sessionmaker(engine, expire_on_commit=False)


def is_postgres(bind: Engine | Connection | Session) -> bool:
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"
