"""Petitions' live content: config.toml's, or the version staff saved last.

config.toml seeds each petition's content. Once staff change a petition (the console or
the API: bot/shell/petition_versions.py), its row holds the live content as JSON
(`petitions.content`, the newest of its versions) and the file's entry for it is no longer
used; a petition staff created exists only in the database. Start-up names every part of
the file that is overridden so (`overridden`), so an operator who edits the file knows why
nothing changed.

The JSON is the file's own shape (dates written 2025-03-17), so one set of rules,
bot.infra.config.check_petition, checks the file and every save alike.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from bot.infra.config import Config, Petition, check_petition
from models.tables import petition_versions, petitions

FROM_FILE = "config.toml"  # who saved a version that is the file's content
FIELDS = ("slug", "code", "title", "summary", "issue", "decision_makers", "organiser",
          "created", "goal", "share_url", "external", "closed", "milestones")
STORED = (select(petitions.c.id, petitions.c.slug, petitions.c.content)
          .where(petitions.c.content.is_not(None)).order_by(petitions.c.id))


def content_of(petition: Petition) -> dict[str, Any]:
    """A petition as the JSON its versions keep (an open petition has no "closed")."""
    content: dict[str, Any] = {
        "slug": petition.slug, "code": petition.code, "title": petition.title,
        "summary": petition.summary, "issue": petition.issue,
        "decision_makers": list(petition.decision_makers), "organiser": petition.organiser,
        "created": petition.created.isoformat(), "goal": petition.goal,
        "share_url": petition.share_url,
        "external": [{"source": e.source, "count": e.count}
                     | ({"as_of": e.as_of.isoformat()} if e.as_of else {})
                     for e in petition.external],
        "milestones": list(petition.milestones)}
    if petition.closed is not None:
        content["closed"] = petition.closed.isoformat()
    return content


def petition_of(content: Mapping[str, Any]) -> Petition:
    """The petition a saved version holds. It was checked when saved; a rule added since
    does not stop the bot from using it."""
    return check_petition(content)[0]


def live_petitions(conn: Connection | Session, config: Config) -> tuple[Petition, ...]:
    """Every petition as supporters and staff see it now: the file's, in its order, each
    replaced by what staff saved; then those staff created, oldest first."""
    stored = {row.slug: row.content for row in conn.execute(STORED)}
    from_file = tuple(petition_of(stored.pop(p.slug)) if p.slug in stored else p
                      for p in config.petitions)
    return from_file + tuple(petition_of(content) for content in stored.values())


def live_petition(conn: Connection | Session, config: Config, slug: str) -> Petition:
    """One petition as it is now (KeyError when there is none with this slug)."""
    for petition in live_petitions(conn, config):
        if petition.slug == slug:
            return petition
    raise KeyError(slug)


@dataclass(frozen=True)
class Saved:
    """Who saved a version of a petition's content, and when."""

    version: int
    actor: str
    at: dt.datetime
    note: str | None  # e.g. "restored version 3"
    content: dict[str, Any]


def saved_versions(conn: Connection | Session, petition_id: int) -> list[Saved]:
    """Every version of a petition's content, oldest first."""
    rows = conn.execute(select(petition_versions.c.version, petition_versions.c.actor,
                               petition_versions.c.created_at, petition_versions.c.note,
                               petition_versions.c.content)
                        .where(petition_versions.c.petition_id == petition_id)
                        .order_by(petition_versions.c.version))
    return [Saved(row.version, row.actor, row.created_at, row.note, row.content)
            for row in rows]


def overridden(conn: Connection | Session, config: Config) -> list[str]:
    """What in config.toml's petitions the database overrides, a line each, e.g.
    "petitions[sirt].summary: changed in the console by x on 2026-12-05; the file's value
    is not used"."""
    in_file = {p.slug: content_of(p) for p in config.petitions}
    lines = []
    for row in conn.execute(STORED):
        history = saved_versions(conn, row.id)
        if row.slug not in in_file:
            first = history[0] if history else None
            lines.append(f"petitions[{row.slug}]: created in the console"
                         + (f" by {first.actor} on {first.at:%Y-%m-%d}" if first else "")
                         + "; it is not in the file")
            continue
        theirs = in_file[row.slug]
        for key in FIELDS:
            if theirs.get(key) != row.content.get(key):
                changer = _last_change(history, key)
                by = f" by {changer.actor} on {changer.at:%Y-%m-%d}" if changer else ""
                lines.append(f"petitions[{row.slug}].{key}: changed in the console{by}; the "
                             "file's value is not used")
    return lines


def _last_change(history: list[Saved], key: str) -> Saved | None:
    """The newest version that changed `key` (the first is the file's, kept when staff
    first saved); when none did (the file changed since), the newest: the one in use."""
    changer = None
    for before, saved in itertools.pairwise(history):
        if saved.content.get(key) != before.content.get(key):
            changer = saved
    return changer or (history[-1] if history else None)


__all__ = ["FIELDS", "FROM_FILE", "Saved", "content_of", "live_petition", "live_petitions",
           "overridden", "petition_of", "saved_versions"]
