"""Which database errors mean "unavailable, retry" (DESIGN §8), and the Telegram poller
that retries only those: one supporter's refused message never holds up the next."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    InvalidRequestError,
    OperationalError,
    PendingRollbackError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from telegram import Bot, Update

from bot.channels.telegram.inbound import handle_polled
from bot.infra.db_errors import database_unavailable
from bot.shell.service import Handled


def missing_table() -> ProgrammingError:
    """PostgreSQL's "relation does not exist" (SQLSTATE 42P01), as psycopg raises it."""
    return ProgrammingError("SELECT 1", {}, SimpleNamespace(sqlstate="42P01"))  # type: ignore[arg-type]


def dbapi(kind: type[DBAPIError], invalidated: bool = False) -> DBAPIError:
    return kind("SELECT 1", {}, Exception("driver says no"), connection_invalidated=invalidated)


@pytest.mark.parametrize("error", [
    dbapi(OperationalError), dbapi(InterfaceError), dbapi(DBAPIError, invalidated=True),
    dbapi(IntegrityError, invalidated=True), PoolTimeoutError("QueuePool limit reached"),
    missing_table(),  # a migration under way: every message would meet it
])
def test_a_lost_or_busy_database_is_unavailable(error: BaseException) -> None:
    assert database_unavailable(error)


@pytest.mark.parametrize("error", [
    dbapi(DataError), dbapi(IntegrityError), dbapi(DBAPIError), dbapi(ProgrammingError),
    StatementError("bad bind", "SELECT 1", {}, ValueError()), InvalidRequestError("bug"),
    PendingRollbackError("bug"), ValueError("not a database error"), OverflowError(),
])
def test_a_refused_value_or_a_bug_is_not_unavailable(error: BaseException) -> None:
    assert not database_unavailable(error)


MESSAGE = {"update_id": 41, "message": {
    "message_id": 1, "date": 0, "text": "Zanzibar",
    "chat": {"id": 876543217, "type": "private", "first_name": "Zed"},
    "from": {"id": 876543217, "is_bot": False, "first_name": "Zed"}}}


class FlakyService:
    """A service whose receive fails with the given errors, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.config = SimpleNamespace(staff=SimpleNamespace(telegram_ids=()))

    def receive(self, _received: Any) -> Handled:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return Handled(replies=())


def poll_one(service: FlakyService) -> None:
    update = Update.de_json(MESSAGE, Bot("123:TOKEN"))
    asyncio.run(handle_polled(update, Bot("123:TOKEN"), service,  # type: ignore[arg-type]
                              running=lambda: True, first_delay=0.0))


def test_an_update_is_retried_while_the_database_is_unavailable(
        caplog: pytest.LogCaptureFixture) -> None:
    service = FlakyService(dbapi(OperationalError), dbapi(DBAPIError, invalidated=True))
    poll_one(service)
    assert service.calls == 3  # handled once the database was back
    assert caplog.text.count("retrying update") == 2


@pytest.mark.parametrize("error", [dbapi(DataError), dbapi(IntegrityError), KeyError("Zed")])
def test_an_update_the_database_refuses_is_dropped_once_and_logged_without_its_content(
        error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    service = FlakyService(error, error)
    poll_one(service)
    assert service.calls == 1  # not retried: the next update is not held up
    [line] = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert line.startswith(f"telegram update 41 dropped: {type(error).__name__} at ")
    for secret in ("Zanzibar", "Zed", "876543217", "driver says no"):
        assert secret not in caplog.text, secret


def test_polling_stops_retrying_when_the_application_stops(
        caplog: pytest.LogCaptureFixture) -> None:
    service = FlakyService(*[dbapi(OperationalError)] * 5)
    update = Update.de_json(MESSAGE, Bot("123:TOKEN"))
    answers = iter([True, True, False])
    asyncio.run(handle_polled(update, Bot("123:TOKEN"), service,  # type: ignore[arg-type]
                              running=lambda: next(answers), first_delay=0.0))
    assert service.calls == 2
    assert "stopping with update 41 unhandled" in caplog.text
