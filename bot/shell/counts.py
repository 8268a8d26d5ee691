"""The signature counts a process shows: the kept counters (no COUNT(*)), re-read at most
once a second, with the process's own new signatures shown at once; and a petition's
counts as the public JSON and the staff API give them."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from bot.infra.config import Petition as PetitionContent
from models import ChannelCount, Petition
from models.tables import petitions

COUNTS_TTL = 1.0  # seconds a process may show a count before re-reading it
READ = select(petitions.c.slug, petitions.c.signature_count)


class Counts:
    """Signatures collected here, by petition slug. Shared by a process's threads: the
    (read at, counts) pair is replaced whole, never changed in place."""

    def __init__(self) -> None:
        self._counts: tuple[float, dict[str, int]] = (0.0, {})

    def here(self, conn: Connection | Session, fresh: bool = False) -> dict[str, int]:
        """The counts, re-read if older than COUNTS_TTL (or `fresh` asked for)."""
        read_at, counts = self._counts
        if fresh or time.monotonic() - read_at > COUNTS_TTL:
            counts = {row.slug: row.signature_count for row in conn.execute(READ)}
            self._counts = (time.monotonic(), counts)
        return counts

    def added(self, petition: str, here: int) -> None:
        """A signature this process committed: `petition` has `here` now."""
        read_at, counts = self._counts
        self._counts = (read_at, {**counts, petition: here})

    def forget(self) -> None:
        """Something was taken away (an erasure): the next reader reads again."""
        self._counts = (0.0, self._counts[1])


__all__ = ["COUNTS_TTL", "Counts"]


CHANNELS = ("sms", "whatsapp", "telegram")
PAPER = "paper"  # signatures collected on paper and imported (bot/shell/imports.py)


def public_counts(session: Session, content: PetitionContent) -> dict[str, Any]:
    """A petition's counts as the public JSON and the staff API give them: the total, those
    collected here (by channel: "paper" too, once any paper signature was imported) and
    those collected elsewhere (by source)."""
    row = session.execute(select(Petition.id, Petition.signature_count)
                          .where(Petition.slug == content.slug)).one_or_none()
    by_channel: dict[str, int] = {} if row is None else dict(session.execute(
        select(ChannelCount.channel, ChannelCount.count)
        .where(ChannelCount.petition_id == row.id)).all())
    here = 0 if row is None else int(row.signature_count)
    return {
        "total": here + content.external_count,
        "here": here,
        "external": [{"source": e.source, "count": e.count} for e in content.external],
        "by_channel": {c: by_channel.get(c, 0) for c in CHANNELS} | (
            {PAPER: by_channel[PAPER]} if by_channel.get(PAPER) else {}),
    }
