"""The inbound path's statements, run on the driver's cursor inside the Connection's
transaction.

Every inbound message runs the same eight or nine small statements. `Connection.execute`
spends about two thirds of such a statement's time on its own bookkeeping (an execution
context, a result object, events), which bench/inbound.py measured at a third of the
product's throughput on both databases. So each statement here is compiled once per
database by SQLAlchemy, as every other statement is, and then run with SQLAlchemy's public
pieces only:
- the SQL and its parameter names from the compiled statement (`string`, `positiontup`,
  `binds`), each value passed through its type's `bind_processor` and each column through
  its type's `result_processor` (UTC dates, JSON), as Connection.execute would;
- the driver's cursor of the Connection's own pooled connection (`Connection.connection`),
  so the statement is part of the message's transaction;
- a driver error raised as SQLAlchemy's exception (`DBAPIError.instance`), the
  connection invalidated first (`Connection.invalidate`) if the database went away.

On SQLite, the first of them begins the transaction as Connection.execute's first statement
would (BEGIN IMMEDIATE and the writer lock: models/db.py). What cannot run this way runs
through Connection.execute, unchanged: a statement with an expanding IN, or a callable
parameter; one outside a transaction; and statements beyond the first STATEMENTS_KEPT met
(the inbound path has about twenty).
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler

from models.db import begin_sqlite

Processor = Callable[[Any], Any]
STATEMENTS_KEPT = 256


class Plan:
    """One statement compiled for one database: what the driver is given, and how."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))  # type: ignore[attr-defined]
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("a statement with expanding parameters (IN) runs as usual")
        self.sql: str = compiled.string
        self.positional = compiled.positional
        # In the order the driver takes them; a name used twice is given twice (qmark).
        names: Sequence[str] = (compiled.positiontup or ()) if self.positional else tuple(
            dict.fromkeys(compiled.bind_names.values()))
        if not self.positional and any(f"%({name})s" not in self.sql for name in names):
            raise ValueError("a parameter name the driver sees differently runs as usual")
        binds = []
        for name in names:
            bind = compiled.binds[name]
            if bind.callable is not None:
                raise ValueError("a parameter with a callable value runs as usual")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            # (name, True if the caller gives the value, else the value written in it)
            binds.append((name, bind.required, bind.value, process))
        self.binds: tuple[tuple[str, bool, Any, Processor | None], ...] = tuple(binds)
        columns = list(getattr(statement, "exported_columns", ()))
        self.row = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        self.results = tuple(
            (i, process) for i, column in enumerate(columns)
            if (process := column.type.dialect_impl(dialect).result_processor(
                dialect, None)) is not None)

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = []
        for name, given, written, process in self.binds:
            value = params[name] if given else written
            values.append(value if process is None else process(value))
        if self.positional:
            return tuple(values)
        return dict(zip((b[0] for b in self.binds), values, strict=True))

    def read(self, raw: Sequence[Any]) -> Any:
        values = list(raw)
        for i, process in self.results:
            values[i] = process(values[i])
        return self.row(*values)


class Statements:
    """Plans for the statements one engine's inbound path runs, made on first use."""

    def __init__(self) -> None:
        self._plans: dict[int, tuple[Executable, Plan | None]] = {}
        self._making = threading.Lock()

    def rows(self, conn: Connection, statement: Executable,
             params: Mapping[str, Any]) -> list[Any]:
        """The statement's rows, each a named tuple."""
        plan = self._plan(conn, statement)
        if plan is None:
            return list(conn.execute(statement, params).all())
        return self._run(conn, plan, params, fetch=True)[0]

    def scalar(self, conn: Connection, statement: Executable,
               params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        rows = self.rows(conn, statement, params)
        return rows[0][0] if rows else None

    def run(self, conn: Connection, statement: Executable, params: Mapping[str, Any]) -> int:
        """Run a statement without RETURNING; how many rows it changed."""
        plan = self._plan(conn, statement)
        if plan is None:
            return int(conn.execute(statement, params).rowcount)  # type: ignore[attr-defined]
        return self._run(conn, plan, params, fetch=False)[1]

    def _plan(self, conn: Connection, statement: Executable) -> Plan | None:
        if not conn.in_transaction():
            return None  # (Connection.execute begins one)
        if conn.dialect.name == "sqlite":
            try:
                began = conn.connection.driver_connection.in_transaction  # type: ignore[union-attr]
            except conn.dialect.loaded_dbapi.Error:
                return None  # (closed: Connection.execute meets it, and says so its way)
            if not began:  # BEGIN IMMEDIATE and the writer lock, as Connection.execute's
                begin_sqlite(conn)  # first statement would have them (models/db.py)
        kept = self._plans.get(id(statement))
        if kept is not None and kept[0] is statement:
            return kept[1]
        with self._making:
            if len(self._plans) >= STATEMENTS_KEPT:
                return None
            try:
                plan: Plan | None = Plan(statement, conn.dialect)
            except ValueError:
                plan = None
            # (the statement is kept with its plan, so its id is never reused meanwhile)
            self._plans[id(statement)] = (statement, plan)
            return plan

    @staticmethod
    def _run(conn: Connection, plan: Plan, params: Mapping[str, Any],
             fetch: bool) -> tuple[list[Any], int]:
        dialect = conn.dialect
        pooled = conn.connection  # inside conn's transaction
        cursor = pooled.cursor()
        try:
            cursor.execute(plan.sql, plan.parameters(params))
            rows = [plan.read(r) for r in cursor.fetchall()] if fetch else []
            return rows, cursor.rowcount
        except dialect.loaded_dbapi.Error as error:
            lost = dialect.is_disconnect(error, pooled.dbapi_connection, cursor)
            if lost:
                conn.invalidate(error)  # as Connection.execute does when the database is gone
            raise DBAPIError.instance(plan.sql, None, error, dialect.loaded_dbapi.Error,
                                      hide_parameters=True, connection_invalidated=lost,
                                      dialect=dialect) from error
        finally:
            cursor.close()


__all__ = ["Statements"]
