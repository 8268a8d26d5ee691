"""Staff change a petition's content: create, edit, close, reopen, restore. The console and
the staff API both call these, so one place decides every rule.

Rules:
- Every save is checked by the rules config.toml's petitions follow
  (bot.infra.config.check_petition). Input that breaks any of them raises `Invalid` with
  every problem and the field it concerns, and changes nothing.
- Every save that changes something is a new version (n + 1, the whole content, who, a
  note), becomes the petition's live content, moves the content revision in the same
  transaction (every process uses it from its next message) and is audited with each
  changed field's previous and new value. Saving what is already live saves nothing.
- The first time staff change a petition from config.toml, the file's content is kept
  first, as version 1, so it can be restored like any other.
- Restoring saves an old version's content again, as the newest ("restored version N").
- The slug and the code are chosen when a petition is created and never change: links,
  exports and signatures refer to them.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.core.conversation import Channel
from bot.infra.config import Config, Petition, check_petition
from bot.shell import content as live
from bot.shell.petition_content import (
    FROM_FILE,
    content_of,
    live_petitions,
    petition_of,
    saved_versions,
)
from bot.shell.staff import audit
from models import ChannelCount, PetitionVersion
from models import Petition as PetitionRow

EDITABLE = ("title", "summary", "issue", "decision_makers", "organiser", "created", "goal",
            "milestones", "share_url", "external", "closed")
CHOSEN_ONCE = ("slug", "code")


class Invalid(Exception):
    """Input that breaks the rules: every problem as (field, message); nothing changed.
    A field is a path inside the petition ("summary", "external[0].count")."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{where}: {message}" for where, message in self.problems))

    @property
    def field(self) -> str:
        """The first problem's field, as it is named on the petition ("external")."""
        return top_field(self.problems[0][0]) if self.problems else ""


class Stale(Exception):
    """Someone saved a newer version since the one this change was made on."""


def top_field(where: str) -> str:
    """"external[0].count" -> "external"."""
    return where.split("[", 1)[0].split(".", 1)[0]


@dataclass(frozen=True)
class Version:
    """One saved version of a petition's content, and what it changed."""

    number: int
    actor: str
    at: dt.datetime
    note: str | None
    content: dict[str, Any]
    changes: dict[str, tuple[Any, Any]]  # field -> (before, after), against the one before
    live: bool  # the content supporters see now


Problems = list[tuple[str, str]]


def proposed(session: Session, config: Config, slug: str | None, changes: Mapping[str, Any],
             now: dt.datetime) -> tuple[Petition, Problems]:
    """The petition as it would be with `changes` (a new one when `slug` is None), and
    every problem with it; nothing is saved (the console's preview). KeyError for an
    unknown petition."""
    if slug is None:
        return _new(session, config, changes)
    return _changed(config, _current(session, config, slug), changes, now)


def create(session: Session, config: Config, fields: Mapping[str, Any], actor: str,
           now: dt.datetime) -> Petition:
    """A new petition, only in the database, with its row and channel counters."""
    # First, as every content change does: the content_state row, locked until commit, makes
    # two creations one after the other, so the second sees the first's slug and code.
    live.changed(session)
    petition, problems = _new(session, config, fields)
    if problems:
        raise Invalid(problems)
    content = content_of(petition)
    row = PetitionRow(slug=petition.slug, content=content, content_version=1,
                      signature_count=0, last_number=0, created_at=now)
    session.add(row)
    session.flush()
    session.add_all(ChannelCount(petition_id=row.id, channel=channel.value, count=0)
                    for channel in Channel)
    session.add(PetitionVersion(petition_id=row.id, version=1, content=content, actor=actor,
                                note="created", created_at=now))
    audit(session, actor, "petition.create", f"petition:{petition.slug}",
          {"version": 1, "title": petition.title}, now)
    return petition


def edit(session: Session, config: Config, slug: str, changes: Mapping[str, Any],
         actor: str, now: dt.datetime, based_on: int | None = None) -> Petition:
    """The petition with `changes` (field -> value, as config.toml would write it; None
    takes an optional field away) saved as its newest version. "closed" may also be True
    (closed today, or on the day it already closed) or False (open again).
    KeyError for an unknown petition; Stale when `based_on` is no longer the newest."""
    row, current = _locked(session, config, slug)
    if based_on is not None and based_on != row.content_version:
        raise Stale(slug)
    petition, problems = _changed(config, current, changes, now)
    if problems:
        raise Invalid(problems)
    return _save(session, row, current, petition, actor, now)


def close(session: Session, config: Config, slug: str, actor: str,
          now: dt.datetime) -> Petition:
    """Closed today (the campaign's date), the day retention counts from."""
    return edit(session, config, slug, {"closed": True}, actor, now)


def reopen(session: Session, config: Config, slug: str, actor: str,
           now: dt.datetime) -> Petition:
    """Open again (retention no longer counts towards anonymising its signatures)."""
    return edit(session, config, slug, {"closed": False}, actor, now)


def restore(session: Session, config: Config, slug: str, number: int, actor: str,
            now: dt.datetime) -> Petition:
    """An old version's content saved again as the newest (checked by today's rules)."""
    row, current = _locked(session, config, slug)
    content = session.scalar(select(PetitionVersion.content).where(
        PetitionVersion.petition_id == row.id, PetitionVersion.version == number))
    if content is None:
        raise Invalid([("version", f"this petition has no version {number}")])
    petition, problems = check_petition(_table(content))
    if problems:
        raise Invalid(problems)
    return _save(session, row, current, petition, actor, now, note=f"restored version {number}")


def versions(session: Session, config: Config, slug: str) -> list[Version]:
    """Every saved version of a petition, newest first, each with what it changed."""
    row = _row(session, config, slug)
    found, before = [], None
    for saved in saved_versions(session, row.id):
        found.append(Version(saved.version, saved.actor, saved.at, saved.note, saved.content,
                             {} if before is None else changes(before, saved.content),
                             saved.version == row.content_version))
        before = saved.content
    return found[::-1]


def version_of(session: Session, config: Config, slug: str) -> int:
    """The number of the petition's live version (0: config.toml's, never changed)."""
    return _row(session, config, slug).content_version


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each field whose value differs: (before, after)."""
    return {key: (before.get(key), after.get(key)) for key in (*CHOSEN_ONCE, *EDITABLE)
            if before.get(key) != after.get(key)}


def _save(session: Session, row: PetitionRow, before: Petition, after: Petition, actor: str,
          now: dt.datetime, note: str | None = None) -> Petition:
    old, new = content_of(before), content_of(after)
    changed = changes(old, new)
    if not changed:
        return before
    if row.content is None:  # the file's content, kept so it can be restored
        session.add(PetitionVersion(petition_id=row.id, version=1, content=old,
                                    actor=FROM_FILE, note="from config.toml", created_at=now))
        row.content_version = 1
    row.content_version += 1
    row.content = new
    session.add(PetitionVersion(petition_id=row.id, version=row.content_version, content=new,
                                actor=actor, note=note, created_at=now))
    live.changed(session)
    detail: dict[str, Any] = {"version": row.content_version, "changed": {
        key: {"before": was, "after": becomes} for key, (was, becomes) in changed.items()}}
    if note:
        detail["note"] = note
    audit(session, actor, _action(changed, note), f"petition:{row.slug}", detail, now)
    return after


def _action(changed: Mapping[str, Any], note: str | None) -> str:
    if note:
        return "petition.restore"
    if set(changed) == {"closed"}:
        return "petition.close" if changed["closed"][1] else "petition.reopen"
    return "petition.edit"


def _new(session: Session, config: Config,
         fields: Mapping[str, Any]) -> tuple[Petition, Problems]:
    problems = [(key, "not a field of a petition") for key in fields
                if key not in (*CHOSEN_ONCE, *EDITABLE)]
    petition, found = check_petition(_table(fields))
    problems += found
    taken = live_petitions(session, config)
    if petition.slug and (any(p.slug == petition.slug for p in taken) or session.scalar(
            select(PetitionRow.id).where(PetitionRow.slug == petition.slug)) is not None):
        problems.append(("slug", f"{petition.slug!r} is already used by another petition"))
    if petition.code and any(p.code == petition.code for p in taken):
        problems.append(("code", f"{petition.code!r} is already used by another petition"))
    return petition, problems


def _changed(config: Config, current: Petition, changes: Mapping[str, Any],
             now: dt.datetime) -> tuple[Petition, Problems]:
    problems = [(key, "not a field staff can change" if key in CHOSEN_ONCE
                 else "not a field of a petition") for key in changes if key not in EDITABLE]
    closing = changes.get("closed")
    if isinstance(closing, bool):
        today = now.astimezone(zoneinfo.ZoneInfo(config.broadcast.timezone)).date()
        changes = {**changes, "closed": (current.closed or today).isoformat() if closing
                   else None}
    petition, found = check_petition(_table({**content_of(current), **changes}))
    return petition, problems + found


def _current(session: Session, config: Config, slug: str) -> Petition:
    row = _row(session, config, slug)
    return petition_of(row.content) if row.content is not None else next(
        p for p in config.petitions if p.slug == slug)


def _row(session: Session, config: Config, slug: str) -> PetitionRow:
    row = session.scalar(select(PetitionRow).where(PetitionRow.slug == slug))
    if row is None or (row.content is None and slug not in {p.slug for p in config.petitions}):
        raise KeyError(slug)
    return row


def _locked(session: Session, config: Config, slug: str) -> tuple[PetitionRow, Petition]:
    """The petition's row, locked until the transaction ends (two saves take turns), and
    its live content."""
    row = session.scalar(select(PetitionRow).where(PetitionRow.slug == slug)
                         .with_for_update())
    if row is not None and row.content is not None:
        return row, petition_of(row.content)
    for petition in config.petitions:
        if row is not None and petition.slug == slug:
            return row, petition
    raise KeyError(slug)


def _table(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Content as config.toml would write it: TOML has no null, so a None is left out."""
    table = {key: value for key, value in fields.items() if value is not None}
    if isinstance(table.get("external"), list):
        table["external"] = [{k: v for k, v in item.items() if v is not None}
                             if isinstance(item, Mapping) else item
                             for item in table["external"]]
    return table


__all__ = ["EDITABLE", "Invalid", "Problems", "Stale", "Version", "changes", "close",
           "create", "edit", "proposed", "reopen", "restore", "top_field", "version_of",
           "versions"]
