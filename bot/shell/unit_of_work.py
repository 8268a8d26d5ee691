"""One inbound message's unit of work: a connection and one transaction, committed when the
message has been handled and rolled back if anything fails.

On SQLite, this process's messages take turns: they would queue for the write lock anyway,
and queued before taking a connection, one connection does every write, so its page cache
stays valid (SQLite empties a connection's cache whenever another connection has written)
and the threads waiting sleep instead of taking the GIL from the one writing. PostgreSQL
runs them side by side: the shell locks a person's rows instead (`UnitOfWork.lock_rows`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.exc import OperationalError

from models.db import lock_deadline, transaction
from models.statements import Statements

# How long a message waits for its turn and SQLite's write lock before its webhook answers
# 503 (the provider retries): inside Twilio's 15 s timeout, so the answer is still heard.
# A provider's whole webhook request is held to it too (webhooks/guards.py), whatever it
# reads or writes: a delivery report, a staff command, a chat Telegram says has moved.
INBOUND_PATIENCE = 10.0
KEPT_CONNECTIONS = 4     # idle connections kept between messages, at most
KEEP_CONNECTION = 300.0  # seconds before one goes back to the pool


@dataclass(frozen=True)
class UnitOfWork:
    """The connection one message's statements run on, inside its transaction."""

    conn: Connection
    lock_rows: bool  # PostgreSQL: lock a person's rows before reading them (SQLite's
                     # write lock already serialises every writer)
    statements: Statements  # the inbound path's statements, run without Connection.execute's
                            # bookkeeping (models/statements.py); anything else: conn.execute

    def rows(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        """The statement's rows (named tuples)."""
        return self.statements.rows(self.conn, statement, params)

    def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """The first column of its first row, or None."""
        return self.statements.scalar(self.conn, statement, params)

    def run(self, statement: Executable, params: Mapping[str, Any]) -> int:
        """Run it (no RETURNING): how many rows it changed."""
        return self.statements.run(self.conn, statement, params)


class Transactions:
    """Units of work for inbound messages, on connections kept between messages (taking
    one from the pool and giving it back cost a tenth of a message's time): at most
    KEPT_CONNECTIONS idle, each handed back after KEEP_CONNECTION seconds so that the
    pool's own recycling still applies."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        sqlite = engine.dialect.name == "sqlite"
        self._one_at_a_time = threading.Lock() if sqlite else None
        self._idle: list[tuple[Connection, float]] = []
        self.statements = Statements()

    @contextlib.contextmanager
    def begin(self) -> Iterator[UnitOfWork]:
        """A unit of work: committed if the block ends normally, else rolled back."""
        # The turn and the write lock, both; no later than the webhook's own deadline.
        deadline = time.monotonic() + INBOUND_PATIENCE
        request_deadline = lock_deadline()
        if request_deadline is not None:
            deadline = min(deadline, request_deadline)
        with self._turn(deadline):
            conn, since = self._take()
            sqlite = self._one_at_a_time is not None
            try:
                with transaction(conn, lock_deadline=deadline if sqlite else None):
                    yield UnitOfWork(conn, lock_rows=not sqlite, statements=self.statements)
            except Exception as error:
                if getattr(error, "connection_invalidated", False):
                    self.close()  # the database went away: the kept ones are stale too
                raise
            finally:
                self._give_back(conn, since)

    def close(self) -> None:
        """Give every idle connection back to the pool."""
        while self._idle:
            try:
                conn, _ = self._idle.pop()
            except IndexError:  # another thread took the last one
                return
            conn.close()

    @contextlib.contextmanager
    def _turn(self, deadline: float) -> Iterator[None]:
        if self._one_at_a_time is None:
            yield
            return
        if not self._one_at_a_time.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise OperationalError("inbound message", None, TimeoutError(
                "this process's earlier messages took too long"))
        try:
            yield
        finally:
            self._one_at_a_time.release()

    def _take(self) -> tuple[Connection, float]:
        """A connection, with when it was first taken from the pool."""
        while self._idle:
            try:
                conn, since = self._idle.pop()
            except IndexError:
                break
            if not (conn.closed or conn.invalidated) and (
                    time.monotonic() - since < KEEP_CONNECTION):
                return conn, since
            conn.close()
        return self.engine.connect(), time.monotonic()

    def _give_back(self, conn: Connection, since: float) -> None:
        if len(self._idle) < KEPT_CONNECTIONS and not (conn.closed or conn.invalidated):
            self._idle.append((conn, since))
        else:
            conn.close()


__all__ = ["INBOUND_PATIENCE", "Transactions", "UnitOfWork"]
