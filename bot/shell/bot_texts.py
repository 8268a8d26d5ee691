"""The bot's words as staff reworded them, and the consent version they make."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from bot.infra.config import Config


def config_overrides(config: Config) -> dict[str, str]:
    """The wording config.toml sets: [texts], [privacy] and [safeguarding]."""
    overrides = {**config.texts, "consent": config.privacy.consent,
                 "ask_updates": config.privacy.updates}
    if config.safeguarding.reply:
        overrides["signpost"] = config.safeguarding.reply
    return overrides


def live_texts(conn: Connection | Session, config: Config) -> tuple[dict[str, str], str]:
    """Every reworded text, and the consent version supporters are shown now."""
    return config_overrides(config), config.privacy.version
