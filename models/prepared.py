"""Statements every inbound message runs, compiled once and run on the driver's cursor.

SQLAlchemy builds and compiles these statements (so they are portable and typed, like every
other statement here); `Prepared` then skips its per-execution bookkeeping (execution
context, result object, events), which bench/profile_inbound.py measured at two thirds of
a simple statement's time. What is kept is what matters: parameters and rows pass through
the same type processors SQLAlchemy uses (dates as UTC, JSON), the statement runs inside
the Connection's transaction, and a driver error is raised as SQLAlchemy's own exception,
after invalidating the connection if it was lost, exactly as Connection.execute would.

Only plain statements qualify: no expanding IN, no executemany. Everything else goes
through Connection.execute as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None


class _Compiled:
    """One statement compiled for one dialect."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        if compiled.post_compile_params or compiled.literal_execute_params or (
                "__[POSTCOMPILE_" in compiled.string):
            raise ValueError("Prepared cannot run statements with expanding parameters (IN)")
        self.sql = compiled.string
        self.positional = compiled.positional
        # In the order the driver wants them: a name used twice is passed twice (qmark).
        names: Sequence[str] = (compiled.positiontup or ()) if self.positional else tuple(
            compiled.binds)
        # (name, value written in the statement or None if the caller must give it, processor)
        self.binds: tuple[tuple[str, Any, Processor], ...] = tuple(
            (name, None if compiled.binds[name].required else (
                compiled.binds[name].effective_value,),
             compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names)
        self.escaped = dict(getattr(compiled, "escaped_bind_names", {}) or {})
        columns = getattr(statement, "exported_columns", ())
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                      for c in columns]
        self.results: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (i, p) for i, p in enumerate(processors) if p is not None)

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = []
        for name, written, process in self.binds:
            value = params[name] if written is None else written[0]
            values.append(process(value) if process is not None else value)
        if self.positional:
            return tuple(values)
        return {self.escaped.get(name, name): value
                for (name, _, _), value in zip(self.binds, values, strict=True)}

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        if not self.results:
            return tuple(raw)
        row = list(raw)
        for i, process in self.results:
            row[i] = process(row[i])
        return tuple(row)


class Prepared:
    """A Core statement (or, for statements phrased differently per database, a function of
    the dialect's name giving one) to run many times on a Connection."""

    def __init__(self, statement: ClauseElement | Callable[[str], ClauseElement]) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = self.statement if isinstance(self.statement, ClauseElement) else (
                self.statement(dialect.name))
            compiled = self._compiled[dialect.name] = _Compiled(statement, dialect)
        return compiled

    def _run(self, conn: Connection, params: Mapping[str, Any],
             fetch: bool) -> tuple[list[tuple[Any, ...]], int]:
        if not conn.in_transaction():  # SQLite's BEGIN IMMEDIATE and writer lock come with it
            raise RuntimeError("Prepared statements run inside a transaction (conn.begin())")
        dialect = conn.dialect
        compiled = self._for(dialect)
        parameters = compiled.parameters(params)
        fairy = conn.connection  # the pooled DBAPI connection, inside conn's transaction
        cursor = fairy.cursor()
        try:
            cursor.execute(compiled.sql, parameters)
            rows = [compiled.row(r) for r in cursor.fetchall()] if fetch else []
            return rows, cursor.rowcount
        except dialect.loaded_dbapi.Error as error:
            lost = dialect.is_disconnect(error, fairy.dbapi_connection, cursor)
            if lost:
                # As Connection.execute does: the database went away, so every connection
                # made before now is stale; the pool replaces them as they are taken.
                conn.engine.pool._invalidate(fairy, error, _checkin=False)
                conn.invalidate(error)
            raise DBAPIError.instance(compiled.sql, None, error, dialect.loaded_dbapi.Error,
                                      hide_parameters=True, connection_invalidated=lost,
                                      dialect=dialect) from error
        finally:
            cursor.close()

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self._run(conn, params, fetch=True)[0]

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        row = self.first(conn, params)
        return row[0] if row is not None else None

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement without RETURNING; the number of rows it changed."""
        return self._run(conn, params, fetch=False)[1]


__all__ = ["Prepared"]
