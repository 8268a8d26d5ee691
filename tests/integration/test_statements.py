"""The inbound path's statement runner (models/statements.py) gives what Connection.execute
gives: the same rows, typed the same way, the same row counts, the same exceptions, in
the same transaction; and what it cannot run it hands to Connection.execute."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.shell.unit_of_work import Transactions
from models.statements import Plan, Statements
from models.tables import conversations, identities, petitions, supporters

WHEN = dt.datetime(2026, 12, 5, 9, 30, 15, 123456, tzinfo=dt.UTC)
NEW_SUPPORTER = (insert(supporters).values(phone=bindparam("p_phone"),
                                           created_at=bindparam("p_now"))
                 .returning(supporters.c.id, supporters.c.created_at))
NEW_IDENTITY = (insert(identities).values(
    supporter_id=bindparam("p_supporter"), channel="sms", address=bindparam("p_address"),
    created_at=bindparam("p_now"), last_inbound_at=bindparam("p_now"))
    .returning(identities.c.id))
NEW_CONVERSATION = insert(conversations).values(
    identity_id=bindparam("p_identity"), step="menu", data=bindparam("p_data"), version=1,
    updated_at=bindparam("p_now"))
READ_CONVERSATION = select(conversations.c.step, conversations.c.data, conversations.c.version,
                           conversations.c.updated_at).where(
    conversations.c.identity_id == bindparam("p_identity"))
BUMP = (update(conversations).where(conversations.c.version == bindparam("p_version"))
        .values(version=conversations.c.version + 1))
BY_PHONES = select(supporters.c.id).where(supporters.c.phone.in_(bindparam("phones",
                                                                         expanding=True)))


@pytest.fixture
def transactions(engine: Engine) -> Transactions:
    return Transactions(engine)


def test_rows_and_counts_are_those_connection_execute_gives(
        transactions: Transactions) -> None:
    data = {"name": "Zoë O'Brien", "options": ["SIGN", "MORE"], "page": 2}
    with transactions.begin() as work:
        supporter_id, created_at = work.rows(NEW_SUPPORTER, {"p_phone": "+447700900001",
                                                             "p_now": WHEN})[0]
        assert created_at == WHEN
        identity_id = work.scalar(NEW_IDENTITY, {"p_supporter": supporter_id,
                                                 "p_address": "+447700900001", "p_now": WHEN})
        assert work.run(NEW_CONVERSATION, {"p_identity": identity_id, "p_data": data,
                                           "p_now": WHEN}) == 1
        fast = work.rows(READ_CONVERSATION, {"p_identity": identity_id})
        usual = work.conn.execute(READ_CONVERSATION, {"p_identity": identity_id}).all()
        assert [tuple(r) for r in fast] == [tuple(r) for r in usual]
        row = fast[0]
        assert (row.step, row.data, row.version, row.updated_at) == ("menu", data, 1, WHEN)
        assert row.updated_at.tzinfo is not None
        assert work.run(BUMP, {"p_version": 7}) == 0
        assert work.run(BUMP, {"p_version": 1}) == 1
        # An expanding IN runs through Connection.execute, with the same answer.
        assert work.rows(BY_PHONES, {"phones": ["+447700900001", "+447700900002"]}) == [
            (supporter_id,)]
        assert work.scalar(select(petitions.c.id).where(petitions.c.slug == bindparam("s")),
                           {"s": "no-such-petition"}) is None


def test_its_statements_are_in_the_message_transaction(transactions: Transactions) -> None:
    with pytest.raises(RuntimeError), transactions.begin() as work:
        work.rows(NEW_SUPPORTER, {"p_phone": "+447700900003", "p_now": WHEN})
        if work.conn.dialect.name == "sqlite":  # begun by it: BEGIN IMMEDIATE, writer lock
            assert work.conn.connection.driver_connection.in_transaction  # type: ignore[union-attr]
            assert work.conn.info.get("writer") is not None
        raise RuntimeError("the message failed after its first write")
    with transactions.begin() as work:
        assert work.rows(select(supporters.c.id), {}) == []


def test_a_refused_write_raises_sqlalchemys_exception(transactions: Transactions) -> None:
    params = {"p_phone": "+447700900004", "p_now": WHEN}
    with transactions.begin() as work:
        work.rows(NEW_SUPPORTER, params)
    with pytest.raises(IntegrityError) as refused, transactions.begin() as work:
        work.scalar(select(supporters.c.id), {})  # (on SQLite, the one that begins)
        work.rows(NEW_SUPPORTER, params)
    assert refused.value.statement is not None and "+447700900004" not in refused.value.statement
    with transactions.begin() as work:
        assert len(work.rows(select(supporters.c.id), {})) == 1


def test_a_lost_connection_is_invalidated_and_the_next_message_gets_a_fresh_one(
        transactions: Transactions, engine: Engine) -> None:
    with transactions.begin() as work:
        work.scalar(select(supporters.c.id), {})
    with pytest.raises(DBAPIError) as lost, transactions.begin() as work:
        work.scalar(select(supporters.c.id), {})
        if engine.dialect.name == "postgresql":
            pid = work.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with engine.connect() as other:
                other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        else:  # SQLite: a closed driver connection is its "gone away"
            work.conn.connection.driver_connection.close()  # type: ignore[union-attr]
        work.scalar(select(supporters.c.id), {})
    assert lost.value.connection_invalidated
    with transactions.begin() as work:
        assert work.scalar(select(supporters.c.id), {}) is None


def test_a_statement_that_is_not_runnable_fast_is_run_as_usual(engine: Engine) -> None:
    with pytest.raises(ValueError, match="expanding"):  # no plan: Connection.execute runs it
        Plan(BY_PHONES, engine.dialect)
    statements = Statements()
    with engine.connect() as conn, conn.begin():
        conn.execute(select(1))  # SQLite's transaction begins in Connection.execute
        assert statements.rows(conn, BY_PHONES, {"phones": ["+447700900005"]}) == []
        assert statements.run(conn, BUMP, {"p_version": 3}) == 0


def test_every_statement_of_the_inbound_path_runs_fast(engine: Engine) -> None:
    """None of them falls back to Connection.execute unnoticed (a third of the throughput)."""
    from bot.shell import effects, people
    from models.statements import Plan
    from models.supporters import PETITION_ID

    name = engine.dialect.name
    hot = [people.FIND, people.NEW_CONVERSATION, people.SAVE_CONVERSATION, people.NEW_INBOUND,
           people.SAVE_BUDGET, people.ADOPT, people.NEW_PHONELESS_SUPPORTER,
           people._identity_update(("last_inbound_at",)), effects.NEW_CONSENT,
           effects.COUNT_SIGNATURE, effects.COUNT_CHANNEL, effects.NEW_SIGNATURE, PETITION_ID]
    if name == "postgresql":
        hot.append(people.LOCK_PERSON)
    for statement in hot:
        Plan(statement, engine.dialect)  # raises ValueError for one that would fall back
