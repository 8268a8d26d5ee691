"""Engines and sessions: SQLite tuned for a web server, PostgreSQL as it is."""

from __future__ import annotations

import contextlib
import contextvars
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: one process per database file, threads only
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

LOCK_TIMEOUT = 30.0
BUSY_TIMEOUT_MS = int(LOCK_TIMEOUT * 1000)
POLL_CAP = 0.001  # seconds: the longest a writer sleeps before looking again

# Until when (a time.monotonic()) every SQLite transaction begun in this context waits for
# the write lock, unless it names its own deadline (transaction()): a provider's webhook
# sets it for the whole request (webhooks/guards.py), so whatever the request reads or
# writes waits no longer than the provider waits for an answer. None: LOCK_TIMEOUT.
_LOCK_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "petitionbot_lock_deadline", default=None)


def lock_deadline() -> float | None:
    """This context's deadline for SQLite's write lock, if it has one."""
    return _LOCK_DEADLINE.get()


def set_lock_deadline(deadline: float | None) -> contextvars.Token[float | None]:
    """Give this context a deadline for SQLite's write lock (None: none); the token undoes
    it (`reset_lock_deadline`)."""
    return _LOCK_DEADLINE.set(deadline)


def reset_lock_deadline(token: contextvars.Token[float | None]) -> None:
    """Undo `set_lock_deadline`."""
    _LOCK_DEADLINE.reset(token)


class WriterLock:
    """One SQLite writer at a time, across this process's threads and this machine's
    processes (web workers, the broadcast worker, the poller, the CLI).

    SQLite serialises writers itself, but a writer that finds the file locked sleeps in its
    busy handler, 1, 2, 5, 10 ... up to 100 ms at a time, so under load writers queue
    behind sleepers. Here threads queue on a lock that wakes the next one at once, and
    processes on an flock(2) of `<database>-writer`, looked at again at most every
    millisecond; the kernel drops the flock of a process that dies.
    """

    def __init__(self, database: str) -> None:
        self.path = f"{database}-writer"
        self.local = threading.Lock()
        self.fd = -1
        self.pid = 0

    def acquire(self, timeout: float = LOCK_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        if not self.local.acquire(timeout=timeout):
            return False
        if fcntl is None:
            return True
        try:
            fd = self._fd()
            delay = POLL_CAP / 32
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass
                if time.monotonic() > deadline:
                    self.local.release()
                    return False
                time.sleep(delay)
                delay = min(delay * 2, POLL_CAP)
        except BaseException:
            self.local.release()
            raise

    def release(self) -> None:
        if fcntl is not None and self.fd >= 0 and self.pid == os.getpid():
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.local.release()

    def _fd(self) -> int:
        # Per process: a descriptor inherited across fork() would share the parent's lock.
        if self.pid != os.getpid():
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self.pid = os.getpid()
        return self.fd


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
    writer = _WRITERS[engine] = WriterLock(parsed.database)
    event.listen(engine, "connect", _sqlite_connect)
    # Each transaction's BEGIN IMMEDIATE comes just before its first statement, from the
    # dialect's execute hooks rather than a "begin" listener on the engine: any engine
    # listener makes every statement on every connection dispatch the engine's events
    # (6% of an inbound message's time, tools/profile_inbound.py).
    def begin_first(cursor: Any, _statement: str, *parameters_and_context: Any) -> bool:
        if not cursor.connection.in_transaction:  # (the sqlite3 connection's own flag)
            _sqlite_begin(parameters_and_context[-1].root_connection, writer)
        return False  # not handled here: SQLAlchemy runs the statement as usual

    for hook in ("do_execute", "do_executemany", "do_execute_no_params"):
        event.listen(engine, hook, begin_first)
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
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


# Each SQLite engine's WriterLock, for begin_sqlite().
_WRITERS: weakref.WeakKeyDictionary[Engine, WriterLock] = weakref.WeakKeyDictionary()


def begin_sqlite(connection: Connection) -> None:
    """Begin the transaction of `connection` (inside connection.begin()) now, as its first
    statement through Connection.execute would: for a statement run on the driver's own
    cursor (models/statements.py), which no execute hook sees."""
    _sqlite_begin(connection, _WRITERS[connection.engine])


def _sqlite_begin(connection: Connection, writer: WriterLock) -> None:
    # Take the write lock up front: a read lock upgraded later can fail with SQLITE_BUSY
    # without waiting, and every inbound message writes. Writers queue on WriterLock
    # first, because SQLite's own busy handler waits by sleeping; the lock is held until
    # the connection is back in the pool, after its COMMIT or ROLLBACK.
    driver: Any = connection.connection.driver_connection  # the sqlite3 connection
    deadline: float | None = connection.info.get("lock_deadline")  # see transaction()
    if deadline is None:
        deadline = _LOCK_DEADLINE.get()
    if "writer" not in connection.info:
        if not writer.acquire(LOCK_TIMEOUT if deadline is None else
                              max(0.0, deadline - time.monotonic())):
            raise OperationalError("BEGIN IMMEDIATE", None, TimeoutError("database is busy"))
        connection.info["writer"] = writer
    # SQLite's own wait, for a writer outside WriterLock (the sqlite3 shell, a backup):
    # no longer than the caller's deadline either.
    # (In whole seconds, so that a kept connection seldom needs telling again.)
    busy = BUSY_TIMEOUT_MS if deadline is None else 1000 * max(
        1, int(deadline - time.monotonic()))
    if connection.info.get("busy_timeout") != busy:
        driver.execute(f"PRAGMA busy_timeout={busy}")
        connection.info["busy_timeout"] = busy
    try:  # on the driver's connection: this runs for every transaction
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:  # as Connection.execute would raise it
        raise OperationalError("BEGIN IMMEDIATE", None, error) from error


def _sqlite_checkin(_dbapi_connection: Any, record: Any) -> None:
    writer = record.info.pop("writer", None)
    if writer is not None:
        writer.release()


@contextlib.contextmanager
def transaction(connection: Connection,
                lock_deadline: float | None = None) -> Iterator[Connection]:
    """`connection.begin()` for a Connection kept between transactions: on SQLite the writer
    lock is let go as soon as the transaction ends, not when the connection goes back to
    the pool (which a kept connection does not). With `lock_deadline` (a time.monotonic()),
    SQLite's write lock is waited for until then only: a caller that already queued for its
    turn waits once in all, not twice."""
    if lock_deadline is not None:
        connection.info["lock_deadline"] = lock_deadline
    try:
        with connection.begin():
            yield connection
    finally:
        # An invalidated connection has already gone back to the pool (its checkin let go).
        if not (connection.closed or connection.invalidated):
            connection.info.pop("lock_deadline", None)
            writer = connection.info.pop("writer", None)
            if writer is not None:
                writer.release()


@contextlib.contextmanager
def long_read(engine: Engine) -> Iterator[Connection]:
    """A connection for one long read (a download, a feed page streaming out) that holds
    up no writer meanwhile.

    PostgreSQL: the engine's own pool; one SELECT is one snapshot. SQLite: the engine's
    connections begin every transaction with BEGIN IMMEDIATE (the writer lock), which would
    keep signing waiting for as long as the client takes to read; a plain connection
    outside that pool reads a WAL snapshot instead."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as connection:
            yield connection
        return
    plain = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 30},
                          hide_parameters=True)
    try:
        with plain.connect() as connection:
            yield connection
    finally:
        plain.dispose()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """The one session factory; callers own the transaction (`with sessions.begin()`)."""
    return sessionmaker(engine, expire_on_commit=False)


def is_postgres(bind: Engine | Connection | Session) -> bool:
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"
