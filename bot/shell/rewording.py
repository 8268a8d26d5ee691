"""Staff rewording the bot's texts: save, reset to default, and the consent versions those
make. The console and the staff API both call these; they only parse and render.

Rules:
- A wording is checked exactly as start-up checks config.toml (bot_texts.problems): what
  start-up would refuse is refused here, and nothing changes.
- Saving the default wording (config.toml's, else the built-in one) removes the console's
  row: a text counts as changed in the console only while it differs.
- Every change is audited with the wording before and after, and moves the content
  revision in its own transaction, so every process says it from its next message on.
- The consent statement and the updates question are what a supporter agrees to: any
  change to either makes a new consent version, "<the file's version>+<n>", holding both
  wordings, and consent records name it from then on (the file's own version is recorded
  beside it the first time, so what earlier signers saw can be read back). With both back
  at the file's wording, supporters are shown the file's version again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.infra.config import Config
from bot.shell import content
from bot.shell.bot_texts import CONSENT_KEYS, FROM_FILE, default_wording, problems, tidy
from bot.shell.staff import audit
from models import BotText, ConsentVersion
from models.tables import content_state

VERSION_LENGTH = 40  # consent_versions.version and consent_records.text_version


class TextError(ValueError):
    """A wording that start-up would refuse; `problems` says why, one line each."""

    def __init__(self, key: str, problems: list[str]) -> None:
        self.key = key
        self.problems = problems
        super().__init__(f"{key}: " + "; ".join(problems))


@dataclass(frozen=True)
class Change:
    """What a save or a reset did."""

    key: str
    previous: str
    text: str
    consent_version: str | None = None  # set when the change made supporters see another


def save(session: Session, config: Config, key: str, text: str, actor: str,
         now: dt.datetime) -> Change | None:
    """Reword `key` (TextError when start-up would refuse the wording); None when it
    already says exactly that."""
    text = tidy(text)
    found = problems(config, key, text)
    if found:
        raise TextError(key, found)
    return _change(session, config, key, text, "text.save", actor, now)


def reset(session: Session, config: Config, key: str, actor: str,
          now: dt.datetime) -> Change | None:
    """Go back to config.toml's wording (or the built-in one); None when it says that."""
    return _change(session, config, key, default_wording(config, key), "text.reset", actor,
                   now)


def _change(session: Session, config: Config, key: str, text: str, action: str, actor: str,
            now: dt.datetime) -> Change | None:
    # First of all: the row lock (PostgreSQL) or the write lock (SQLite) this takes puts
    # two admins' changes one after the other, so each consent version is made once.
    content.changed(session)
    row = session.get(BotText, key)
    previous = _wording(session, config, key)
    if text == previous:
        return None
    if row is None:  # then `previous` was the default: this is a rewording
        session.add(BotText(key=key, text=text, actor=actor, updated_at=now))
    elif text == default_wording(config, key):
        session.delete(row)
    else:
        row.text, row.actor, row.updated_at = text, actor, now
    session.flush()
    version = _consent_version(session, config, actor, now) if key in CONSENT_KEYS else None
    detail = {"previous": previous, "new": text}
    if version is not None:
        detail["consent_version"] = version
    audit(session, actor, action, f"text:{key}", detail, now)
    return Change(key, previous, text, version)


def _consent_version(session: Session, config: Config, actor: str, now: dt.datetime) -> str:
    """The consent version of the wording now in force: the file's own when both questions
    say what the file says, else a new one."""
    privacy = config.privacy
    consent, updates = (_wording(session, config, key) for key in CONSENT_KEYS)
    if (consent, updates) == (privacy.consent, privacy.updates):
        _show(session, None)
        return privacy.version
    if session.get(ConsentVersion, privacy.version) is None:
        session.add(ConsentVersion(version=privacy.version, consent=privacy.consent,
                                   updates=privacy.updates, actor=FROM_FILE, created_at=now))
    base = privacy.version[:VERSION_LENGTH - 4]  # room for "+999"
    made = session.scalars(select(ConsentVersion.version).where(
        ConsentVersion.version.startswith(base + "+", autoescape=True))).all()
    number = 1 + max((int(v[len(base) + 1:]) for v in made if v[len(base) + 1:].isdecimal()),
                     default=0)
    version = f"{base}+{number}"
    session.add(ConsentVersion(version=version, consent=consent, updates=updates, actor=actor,
                               created_at=now))
    _show(session, version)
    return version


def _wording(session: Session, config: Config, key: str) -> str:
    """What the bot says for `key` now, in this transaction."""
    row = session.get(BotText, key)
    return row.text if row is not None else default_wording(config, key)


def _show(session: Session, version: str | None) -> None:
    """Make `version` the one supporters are shown (None: config.toml's)."""
    session.execute(update(content_state).where(content_state.c.id == 1)
                    .values(privacy_version=version))


__all__ = ["Change", "TextError", "reset", "save"]
