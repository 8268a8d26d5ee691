"""The content staff may change without an engineer (DESIGN §3): petitions, the bot's
words and the consent version, as this process last read them.

config.toml seeds the content; what staff changed in the console or the API is in the
database and wins. Every change moves `content_state.revision` in the transaction that
makes it (`changed`); each message and each request reads that one number and, when it
moved, reads the content again: a change reaches every process on its next message, with
no restart and no cache to clear."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, select, update
from sqlalchemy.orm import Session

from bot.core.texts import Texts
from bot.infra.config import Config, FindsPetitions, Petition
from bot.shell import bot_texts, petition_content
from models import ContentState
from models.sql import insert_ignore
from models.tables import content_state

REVISION = select(content_state.c.revision).where(content_state.c.id == 1)


@dataclass(frozen=True)
class Content(FindsPetitions):
    """The live content at one revision (petition() and petition_by_code() find one of
    its petitions)."""

    revision: int
    petitions: tuple[Petition, ...]       # open and closed, in the order staff see them
    overrides: Mapping[str, str]          # text key -> wording, wherever it was set
    privacy_version: str                  # the consent version supporters are shown now
    texts: Texts = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", Texts(self.overrides))


def read(conn: Connection | Session, config: Config, revision: int) -> Content:
    """The content at `revision`: config.toml's, with what staff changed on top."""
    overrides, version = bot_texts.live_texts(conn, config)
    return Content(revision, petition_content.live_petitions(conn, config), overrides, version)


class LiveContent:
    """A process's copy of the content, replaced whole when the revision moves (threads
    share it; it is never changed in place)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._content: Content | None = None

    def current(self, conn: Connection | Session) -> Content:
        """The live content: one small read, and the whole content only when it changed."""
        revision = int(conn.execute(REVISION).scalar() or 0)
        content = self._content
        if content is None or content.revision != revision:
            content = read(conn, self.config, revision)
            self._content = content
        return content


def changed(conn: Connection | Session) -> None:
    """Staff changed some content: every process reads it again on its next message. Call
    in the transaction that makes the change: the row stays locked until it commits, so
    two changes are made one after the other."""
    bump = update(content_state).where(content_state.c.id == 1).values(
        revision=content_state.c.revision + 1)
    if cast(CursorResult[Any], conn.execute(bump)).rowcount == 0:
        # A database whose row was emptied (the migration makes it): made once, even by
        # two changes at the same moment, then moved as usual.
        insert_ignore(conn, ContentState, {"id": 1, "revision": 0}, ["id"])
        conn.execute(bump)


__all__ = ["Content", "LiveContent", "changed", "read"]
