"""Which database errors mean "the database is unavailable, retry" (DESIGN §8).

One answer for every caller: the web app turns these into 503 (the provider retries) and
anything else into a logged 500 (a bug); the Telegram poller retries an update only on
these, and drops an update any other error refuses, so it never blocks the next supporter.
Imports nothing of the project, so anything can import it without a cycle.
"""

from __future__ import annotations

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

MISSING_SCHEMA = ("42P01", "42703")  # PostgreSQL: undefined table, undefined column


def database_unavailable(error: BaseException) -> bool:
    """True when `error` says the database could not be reached or used just now (a lost
    or refused connection, a locked SQLite file, a serialisation failure, an exhausted
    pool, a schema not yet migrated: every message would meet it, so retrying holds up
    nobody), so the same work may succeed later; False for an error this input alone
    would meet again (a value the database refuses, a constraint, a bug)."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeoutError
                  | DisconnectionError):
        return True
    if isinstance(error, ProgrammingError):  # only a table or column that is not there yet
        return getattr(error.orig, "sqlstate", None) in MISSING_SCHEMA
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)
