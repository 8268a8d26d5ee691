"""Small statements both databases need to phrase differently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, model: Any, values: Mapping[str, Any],
                  index_elements: Sequence[str], returning: Any = None) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING; with `returning`, the new row's value or None.

    On PostgreSQL a conflicting row that is not yet committed makes this wait for that
    transaction, so concurrent copies of one insert resolve to exactly one row.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(model).values(**values).on_conflict_do_nothing(
        index_elements=list(index_elements))
    if returning is None:
        session.execute(stmt)
        return None
    return session.scalar(stmt.returning(returning))
