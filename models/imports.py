"""Imports from CSV files: the suppression list, and each import's record.

A suppressed number is never messaged on any channel (SMS, WhatsApp, or a Telegram chat
whose person shared it) from the moment it is imported; the worker checks every send
against this table. Signatures collected on paper are ordinary signatures with channel
"paper" and a `source`, on a supporter of their own who has no channel to be reached on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, intpk, timestamp


class ImportBatch(Base):
    """One import that was kept: what, from which file, by whom, and what it did."""

    __tablename__ = "imports"
    __table_args__ = (UniqueConstraint("kind", "petition_id", "sha256"),)

    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(16))          # suppressions | signatures
    petition_id: Mapped[int | None] = mapped_column(ForeignKey("petitions.id"))
    filename: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))        # the file's, so it is kept once
    rows: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)  # counts of what it did
    actor: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[timestamp]


class Suppression(Base):
    """A number that must never be messaged (e.g. from the Fundraising Preference Service)."""

    __tablename__ = "suppressions"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)   # E.164
    source: Mapped[str] = mapped_column(String(80))
    import_id: Mapped[int | None] = mapped_column(
        ForeignKey("imports.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[timestamp]


__all__ = ["ImportBatch", "Suppression"]
