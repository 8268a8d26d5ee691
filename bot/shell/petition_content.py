"""Petitions' live content: config.toml's, or the version staff saved last."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from bot.infra.config import Config, Petition


def live_petitions(conn: Connection | Session, config: Config) -> tuple[Petition, ...]:
    """Every petition as supporters and staff see it now."""
    return config.petitions
