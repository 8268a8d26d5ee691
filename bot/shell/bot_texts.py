"""The bot's words as staff reworded them, and the consent version supporters are shown.

config.toml seeds the wording ([texts], [privacy] consent and updates, [safeguarding]
reply; bot/core/texts.py's DEFAULTS where it sets none). A `bot_texts` row is an admin's
rewording and wins (bot/shell/rewording.py makes them). `content_state.privacy_version`
names the consent version in force (null: the file's [privacy] version). This module only
reads: bot/shell/content.py builds the live content from it.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from bot.core.conversation import SMS_SEGMENTS, Channel
from bot.core.gsm import encoding, segments, to_gsm7
from bot.core.inputs import MAX_NAME, MAX_VOICE
from bot.core.render import Message, render
from bot.core.texts import DEFAULTS, Phrase, Texts, fields
from bot.infra.config import (
    PRIVACY_FIELDS,
    Config,
    Petition,
    consent_problems,
    text_problems,
)
from models.tables import bot_texts, consent_versions, content_state

CONSENT_KEYS = ("consent", "ask_updates")
# Where config.toml sets each text (the rest: [texts] under their own key).
FILE_PATHS = {"consent": "privacy.consent", "ask_updates": "privacy.updates",
              "signpost": "safeguarding.reply"}
FROM_FILE = "config.toml"  # who made the file's own consent version, in its history


@dataclass(frozen=True)
class Wording:
    """One text as the bot says it now, and where that wording comes from."""

    key: str
    text: str
    source: str                   # "default", "file" (config.toml) or "console"
    default: str                  # what resetting it brings back ...
    default_from_file: bool       # ... from config.toml (else the built-in wording)
    fields: tuple[str, ...]       # the fields it may use
    actor: str | None = None      # who reworded it in the console ...
    updated_at: dt.datetime | None = None  # ... and when


@dataclass(frozen=True)
class VersionEntry:
    """A consent version in its history."""

    version: str
    consent: str
    updates: str
    actor: str
    created_at: dt.datetime | None  # None: the file's version, not yet recorded
    current: bool


@dataclass(frozen=True)
class Preview:
    """A wording as each channel shows it, with sample values in its fields."""

    sms: str
    sms_encoding: str
    sms_segments: int     # before an SMS reply is cut at SMS_SEGMENTS
    sms_cut: bool
    whatsapp: str
    telegram: str         # as the person reads it
    telegram_html: str    # as it is sent


def config_overrides(config: Config) -> dict[str, str]:
    """The wording config.toml sets: [texts], [privacy] and [safeguarding]."""
    overrides = {**config.texts, "consent": config.privacy.consent,
                 "ask_updates": config.privacy.updates}
    if config.safeguarding.reply:
        overrides["signpost"] = config.safeguarding.reply
    return overrides


def default_wording(config: Config, key: str) -> str:
    """The wording a reset brings back: config.toml's, else the built-in one."""
    return config_overrides(config).get(key, DEFAULTS[key])


def allowed_fields(key: str) -> frozenset[str]:
    """The fields a text may use: those its default uses; the consent questions, [privacy]'s."""
    return PRIVACY_FIELDS if key in CONSENT_KEYS else frozenset(fields(key))


def problems(config: Config, key: str, text: str) -> list[str]:
    """Why start-up would refuse `text` as the wording of `key` (empty: nothing)."""
    if not text.strip():
        return ["must not be empty"]
    found = text_problems(text, allowed_fields(key))
    if key == "consent":
        found += consent_problems(text, config.privacy.minimum_age,
                                  config.organisation.privacy_url)
    return found


def tidy(text: str) -> str:
    """A wording as it is kept: each line break one newline (a browser's form sends a
    carriage return too), and no blank space around it."""
    return text.replace("\r\n", "\n").strip()


def live_texts(conn: Connection | Session, config: Config) -> tuple[dict[str, str], str]:
    """Every reworded text, and the consent version supporters are shown now."""
    overrides = config_overrides(config)
    overrides.update((key, text) for key, text in conn.execute(
        select(bot_texts.c.key, bot_texts.c.text)) if key in DEFAULTS)
    return overrides, live_version(conn) or config.privacy.version


def wordings(conn: Connection | Session, config: Config) -> dict[str, Wording]:
    """Every text, in bot/core/texts.py's order, as the bot says it now."""
    reworded = {row.key: row for row in conn.execute(
        select(bot_texts.c.key, bot_texts.c.text, bot_texts.c.actor, bot_texts.c.updated_at))}
    from_file = config_overrides(config)
    found = {}
    for key in DEFAULTS:
        default = from_file.get(key, DEFAULTS[key])
        known = (default, key in from_file, tuple(sorted(allowed_fields(key))))
        row = reworded.get(key)
        if row is not None:
            found[key] = Wording(key, row.text, "console", *known, row.actor, row.updated_at)
        else:
            found[key] = Wording(key, default, "file" if key in from_file else "default",
                                 *known)
    return found


def consent_history(conn: Connection | Session, config: Config) -> list[VersionEntry]:
    """Every consent version, newest first, the file's own among them."""
    live = live_version(conn) or config.privacy.version
    rows = conn.execute(select(consent_versions).order_by(
        consent_versions.c.created_at.desc(), consent_versions.c.version.desc())).all()
    history = [VersionEntry(r.version, r.consent, r.updates, r.actor, r.created_at,
                            r.version == live) for r in rows]
    if all(entry.version != config.privacy.version for entry in history):
        history.append(VersionEntry(config.privacy.version, config.privacy.consent,
                                    config.privacy.updates, FROM_FILE, None,
                                    config.privacy.version == live))
    return history


def overridden(conn: Connection | Session, config: Config) -> list[str]:
    """One line per text the console has reworded, for the operator at start."""
    from_file = config_overrides(config)
    lines = []
    for key, at in conn.execute(select(bot_texts.c.key, bot_texts.c.updated_at)
                                .order_by(bot_texts.c.key)):
        if key not in DEFAULTS:
            continue
        line = (f"{FILE_PATHS.get(key, f'texts.{key}')}: reworded in the console on "
                f"{at:%-d %b %Y}")
        lines.append(line + ("; config.toml's wording is not used" if key in from_file
                             else ""))
    version = live_version(conn)
    if version and version != config.privacy.version:
        lines.append(f"privacy.version: supporters are shown consent version {version}, made "
                     f"in the console, not config.toml's {config.privacy.version}")
    return lines


def preview(config: Config, petition: Petition, key: str, text: str) -> Preview:
    """`text` as the bot would say it for `key` on each channel, with sample values (the
    wording must be valid: see `problems`)."""
    said = Texts({key: text}).render(Phrase(key), samples(config, petition, key))
    sms = to_gsm7(said)
    telegram = render(Message(said), Channel.TELEGRAM).text
    return Preview(sms=render(Message(said), Channel.SMS).text, sms_encoding=encoding(sms),
                   sms_segments=segments(sms), sms_cut=segments(sms) > SMS_SEGMENTS,
                   whatsapp=render(Message(said), Channel.WHATSAPP).text,
                   telegram=html.unescape(telegram), telegram_html=telegram)


# What each field holds, for staff choosing the words around it.
FIELD_MEANINGS: Mapping[str, str] = {
    "organisation": "the charity's full name", "short_name": "the charity's short name",
    "contact": "where to ask questions", "privacy_url": "the privacy notice's address",
    "retention": "how long signatures are kept", "minimum_age": "the minimum age to sign",
    "decision_makers": "who the petition asks", "organiser": "who started the petition",
    "title": "the petition's title", "summary": "the petition's short summary",
    "created": "the day the petition started", "count": "how many people have signed",
    "count_breakdown": "the count, by where people signed", "number": "the signature's number",
    "name": "the supporter's name", "place": "their postcode or country",
    "postcode": "their postcode", "country": "their country", "share_link": "a link to share",
    "page_text": "one page of the petition's full text", "page": "the page's number",
    "pages": "how many pages there are", "max_length": "the most characters accepted",
    "details": "the lines of what we hold about them", "date": "the day they signed",
    "channel": "how they signed (SMS, WhatsApp, Telegram)",
    "updates": "whether they get updates (yes or no)", "text": "their own words",
    "voice_state": "what happened to their words (not read yet, shown, not published)",
    "lines": "supporters' reasons, one a line", "answer": "when the team will answer",
}


def samples(config: Config, petition: Petition, key: str) -> dict[str, object]:
    """Made-up but likely values for every field, from the petition where it has them."""
    org = config.organisation
    here = 1234
    total = petition.external_count + here
    breakdown = " + ".join([*(f"{e.count:,} on {e.source}" for e in petition.external),
                            f"{here:,} here"])
    return {
        "organisation": org.name, "short_name": org.short_name, "contact": org.contact,
        "privacy_url": org.privacy_url, "retention": config.privacy.retention,
        "minimum_age": config.privacy.minimum_age,
        "max_length": MAX_VOICE if "voice" in key else MAX_NAME,
        "decision_makers": " and ".join(petition.decision_makers),
        "organiser": petition.organiser, "title": petition.title, "summary": petition.summary,
        "created": petition.created.strftime("%-d %B %Y"), "count": f"{total:,}",
        "count_breakdown": breakdown + (f" = {total:,}" if petition.external else ""),
        "number": f"{here:,}", "name": "Sam Jones", "place": "Postcode: SW1A 1AA",
        "postcode": "SW1A 1AA", "country": "Ireland",
        "share_link": petition.share_url or org.privacy_url,
        "page_text": _first_words(petition.issue, 250), "page": 1, "pages": 4,
        "details": f"You signed \"{petition.title}\" on 5 Dec 2026 by SMS.",
        "date": "5 Dec 2026", "channel": "SMS", "updates": "yes",
        "text": "My mum waited two years for this treatment.",
        "voice_state": "our team has not read it yet",
        "lines": "\"My mum waited two years for this treatment.\" (Wales)",
        "answer": f"within {config.inbox.answer_within}",
    }


def live_version(conn: Connection | Session) -> str | None:
    """The consent version staff's wording made, while it is in force (None: the file's)."""
    version: str | None = conn.execute(select(content_state.c.privacy_version).where(
        content_state.c.id == 1)).scalar()
    return version


def _first_words(text: str, limit: int) -> str:
    """The start of `text`, cut at a word, for a sample page."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + "..."


__all__ = ["CONSENT_KEYS", "FIELD_MEANINGS", "FROM_FILE", "Preview", "VersionEntry", "Wording",
           "allowed_fields", "config_overrides", "consent_history", "default_wording",
           "live_texts", "live_version", "overridden", "preview", "problems", "samples", "tidy",
           "wordings"]
