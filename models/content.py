"""Content staff change without an engineer (DESIGN §3): petitions' live content and its
versions, the bot's reworded texts, and each consent wording a supporter may have seen.

config.toml seeds the content; once staff change a part of it, the database holds the
live version. `content_state.revision` moves with every change, so each process notices
on its next message and reads the content again (bot/shell/content.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, intpk, timestamp


class ContentState(Base):
    """One row (id 1): the revision of all staff-changed content, and the consent
    version supporters are shown now (null: config.toml's [privacy] version)."""

    __tablename__ = "content_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    privacy_version: Mapped[str | None] = mapped_column(String(40))


class PetitionVersion(Base):
    """Every version of a petition's content, as staff saved it (the newest is live and
    is also on `petitions.content`); restoring an old one saves it again as the newest."""

    __tablename__ = "petition_versions"
    __table_args__ = (UniqueConstraint("petition_id", "version"),)

    id: Mapped[intpk]
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(254))
    note: Mapped[str | None] = mapped_column(String(200))  # e.g. "restored version 3"
    created_at: Mapped[timestamp]


class BotText(Base):
    """A text of bot/core/texts.py as staff reworded it (no row: the default, or
    config.toml's [texts] wording)."""

    __tablename__ = "bot_texts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(254))
    updated_at: Mapped[timestamp]


class ConsentVersion(Base):
    """A consent wording (and the updates question beside it) under its version string:
    consent records name the version, so what each person was shown can be read back."""

    __tablename__ = "consent_versions"

    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    consent: Mapped[str] = mapped_column(Text)
    updates: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[timestamp]


__all__ = ["BotText", "ConsentVersion", "ContentState", "PetitionVersion"]
