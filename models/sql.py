"""Small statements both databases need to phrase differently."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session | Connection, model: Any, values: Mapping[str, Any],
                  index_elements: Sequence[str], returning: Any = None) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING; with `returning`, the new row's value or None.

    On PostgreSQL a conflicting row that is not yet committed makes this wait for that
    transaction, so concurrent copies of one insert resolve to exactly one row.
    """
    # Core, not the ORM's bulk-insert machinery
    connection = session.connection() if isinstance(session, Session) else session
    stmt = insert_ignore_statement(connection.dialect.name, model.__table__, tuple(values),
                                   tuple(index_elements), returning)
    result = connection.execute(stmt, {f"p_{key}": value for key, value in values.items()})
    return None if returning is None else result.scalar()


@functools.lru_cache(maxsize=64)
def insert_ignore_statement(dialect_name: str, table: Any, keys: tuple[str, ...],
                            index_elements: tuple[str, ...], returning: Any = None) -> Any:
    """insert_ignore's statement for `dialect_name`: `keys` bound as p_<key>."""
    # Built once per shape with bound parameters: cheaper than a fresh construct per call.
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt = dialect.insert(table).values({key: bindparam(f"p_{key}") for key in keys})
    stmt = stmt.on_conflict_do_nothing(index_elements=list(index_elements))
    return stmt if returning is None else stmt.returning(returning)
