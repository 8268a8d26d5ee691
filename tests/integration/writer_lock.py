"""Holding, from another connection, what a write waits for: to show that some work (a
dry run, a page that counts a million rows) takes no write lock and waits for none.

SQLite: the writer lock (BEGIN IMMEDIATE, and models/db's WriterLock). PostgreSQL: the
imports' advisory lock and every petition's, receiver's and delivery's row. Whatever waits
for them meanwhile, in this thread, gives up after a second: a failure, not a hang."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, event, func, select, text, update

from bot.shell import imports
from models.db import is_postgres, reset_lock_deadline, set_lock_deadline
from models.tables import event_deliveries, event_receivers, petitions

PATIENCE = 1.0  # seconds


@contextlib.contextmanager
def writer_held(engine: Engine) -> Iterator[None]:
    token = set_lock_deadline(time.monotonic() + PATIENCE)
    try:
        with engine.connect() as conn, conn.begin():
            if is_postgres(engine):
                conn.execute(text(f"SET LOCAL lock_timeout = '{int(PATIENCE * 1000)}ms'"))
                conn.execute(select(func.pg_advisory_xact_lock(imports.LOCK_KEY)))
                conn.execute(select(petitions.c.id).with_for_update())
                conn.execute(select(event_receivers.c.id).with_for_update())
            conn.execute(update(event_deliveries).values(status=event_deliveries.c.status))
            yield
    finally:
        reset_lock_deadline(token)


@contextlib.contextmanager
def deleted_per_transaction(engine: Engine, table: str) -> Iterator[list[int]]:
    """The rows of `table` each transaction deleted, in order (a list ending with the
    open one's): to show that a large purge is done in short transactions."""
    deleted = [0]
    statement_start = f"DELETE FROM {table.upper()}"

    def count(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(statement_start):
            deleted[-1] += cursor.rowcount

    def committed(_conn: Any) -> None:
        deleted.append(0)

    event.listen(engine, "after_cursor_execute", count)
    event.listen(engine, "commit", committed)
    try:
        yield deleted
    finally:
        event.remove(engine, "after_cursor_execute", count)
        event.remove(engine, "commit", committed)
