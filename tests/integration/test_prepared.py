"""models.prepared: statements run on the driver's cursor behave as Connection.execute does,
on SQLite and on PostgreSQL (TEST_DATABASE_URL)."""

from __future__ import annotations

import datetime as dt
from typing import cast

import pytest
from sqlalchemy import Engine, Table, bindparam, func, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from models import Conversation, Identity, Supporter
from models.prepared import Prepared

supporters = cast(Table, Supporter.__table__)
identities = cast(Table, Identity.__table__)
conversations = cast(Table, Conversation.__table__)
NOW = dt.datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=dt.UTC)

NEW_SUPPORTER = Prepared(insert(supporters).values(phone=bindparam("p_phone"),
                                                   created_at=bindparam("p_now"))
                         .returning(supporters.c.id, supporters.c.created_at))
NEW_IDENTITY = Prepared(insert(identities).values(
    supporter_id=bindparam("p_supporter"), channel="sms", address=bindparam("p_address"),
    created_at=bindparam("p_now")).returning(identities.c.id))
NEW_CONVERSATION = Prepared(insert(conversations).values(
    identity_id=bindparam("p_identity"), step=bindparam("p_step"), data=bindparam("p_data"),
    version=1, updated_at=bindparam("p_now")))
CONVERSATION = Prepared(
    select(conversations.c.step, conversations.c.data, conversations.c.version,
           conversations.c.updated_at, literal("marker").label("marker"))
    .where(conversations.c.identity_id == bindparam("p_identity")))
BUMP = Prepared(update(conversations).where(conversations.c.identity_id == bindparam("p_id"),
                                            conversations.c.version == bindparam("p_version"))
                .values(version=conversations.c.version + 1))
# One name used twice: positional drivers (SQLite's ?) must get the value twice.
TWICE = Prepared(select(func.count()).select_from(supporters)
                 .where(supporters.c.id >= bindparam("p_id"), supporters.c.id <= bindparam("p_id")))


def _person(engine: Engine) -> int:
    with engine.begin() as conn:
        row = NEW_SUPPORTER.first(conn, {"p_phone": "+447700900123", "p_now": NOW})
        assert row is not None
        supporter_id, created_at = row
        assert created_at == NOW  # through UTCDateTime both ways: aware UTC
        identity_id = NEW_IDENTITY.scalar(conn, {"p_supporter": supporter_id,
                                                 "p_address": "+447700900123", "p_now": NOW})
        NEW_CONVERSATION.run(conn, {"p_identity": identity_id, "p_step": "name",
                                    "p_data": {"name": "Zoë", "options": ["YES", "NO"]},
                                    "p_now": NOW})
    return int(identity_id)


def test_rows_come_back_as_connection_execute_gives_them(engine: Engine) -> None:
    identity = _person(engine)
    with engine.begin() as conn:
        prepared = CONVERSATION.first(conn, {"p_identity": identity})
        expected = conn.execute(CONVERSATION.statement,  # type: ignore[arg-type]
                                {"p_identity": identity}).first()
        assert CONVERSATION.first(conn, {"p_identity": identity + 1}) is None
    assert prepared == tuple(expected or ())
    assert prepared == ("name", {"name": "Zoë", "options": ["YES", "NO"]}, 1, NOW, "marker")


def test_rowcount_and_repeated_names(engine: Engine) -> None:
    identity = _person(engine)
    with engine.begin() as conn:
        assert BUMP.run(conn, {"p_id": identity, "p_version": 1}) == 1
        assert BUMP.run(conn, {"p_id": identity, "p_version": 1}) == 0  # version moved on
        supporter_id = conn.scalar(select(supporters.c.id))
        assert TWICE.scalar(conn, {"p_id": supporter_id}) == 1


def test_a_missing_parameter_is_an_error_not_a_null(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(KeyError):
        NEW_SUPPORTER.first(conn, {"p_now": NOW})


def test_driver_errors_are_sqlalchemy_errors_and_roll_back(engine: Engine) -> None:
    _person(engine)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        NEW_SUPPORTER.first(conn, {"p_phone": "+447700900999", "p_now": NOW})
        NEW_SUPPORTER.first(conn, {"p_phone": "+447700900123", "p_now": NOW})  # taken
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(supporters)) == 1  # rolled back
    gone = Prepared(select(text("x")).select_from(text("no_such_table")))
    with pytest.raises((OperationalError, ProgrammingError)), engine.begin() as conn:
        gone.all(conn, {})


def test_only_inside_a_transaction_and_without_expanding_in(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(RuntimeError):
        TWICE.scalar(conn, {"p_id": 1})  # no BEGIN (IMMEDIATE), no SQLite writer lock
    some = Prepared(select(supporters.c.id).where(supporters.c.id.in_([1, 2])))
    with engine.begin() as conn, pytest.raises(ValueError):
        some.all(conn, {})
