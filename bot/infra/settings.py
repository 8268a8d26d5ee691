"""Secrets and deployment settings, from the environment only (never from config.toml)."""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

METRICS_ALLOW_DEFAULT = "127.0.0.0/8, ::1"  # loopback only


def _count(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise ValueError(f"{name} must be a whole number (0 or more), not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///petitionbot.db"
    config_path: str = "config.toml"
    public_base_url: str = "http://127.0.0.1:5000"
    secret_key: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_sms_from: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_whatsapp_from: str = ""
    twilio_api_base_url: str = ""
    telegram_bot_token: str = ""
    telegram_webhook_secret: str = ""
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    redis_url: str = ""
    trusted_proxies: int = 0          # reverse proxies in front whose X-Forwarded-* to believe
    metrics_token: str = ""           # Bearer token that may read /metrics
    metrics_allow: str = METRICS_ALLOW_DEFAULT  # addresses that may read /metrics without it

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        return cls(
            database_url=get("DATABASE_URL", cls.database_url),
            config_path=get("PETITIONBOT_CONFIG", cls.config_path),
            public_base_url=get("PUBLIC_BASE_URL", cls.public_base_url).rstrip("/"),
            secret_key=get("SECRET_KEY"),
            twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            twilio_sms_from=get("TWILIO_SMS_FROM"),
            twilio_messaging_service_sid=get("TWILIO_MESSAGING_SERVICE_SID"),
            twilio_whatsapp_from=get("TWILIO_WHATSAPP_FROM"),
            twilio_api_base_url=get("TWILIO_API_BASE_URL").rstrip("/"),
            telegram_bot_token=get("TELEGRAM_BOT_TOKEN"),
            telegram_webhook_secret=get("TELEGRAM_WEBHOOK_SECRET"),
            telegram_api_base_url=get("TELEGRAM_API_BASE_URL", cls.telegram_api_base_url),
            redis_url=get("REDIS_URL"),
            trusted_proxies=_count("TRUSTED_PROXIES", get("TRUSTED_PROXIES", "0")),
            metrics_token=get("METRICS_TOKEN"),
            metrics_allow=get("METRICS_ALLOW", cls.metrics_allow),
        )

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)


def local_secret_key(folder: Path) -> str:
    """A session key generated on first run and kept in `folder` (owner-only)."""
    path = folder / "secret_key"
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: several processes starting
    # at once all end up with the one key that got there first, never a half-written one.
    draft = folder / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process was first: use its key
    finally:
        draft.unlink()
    return path.read_text().strip()


TELEGRAM_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def quiet_library_loggers() -> None:
    """Libraries that would log secrets or phone numbers at INFO are kept to warnings."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # twilio's client logs each request's parameters (phone numbers) at INFO.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


def web_processes(database_url: str, cores: int) -> int:
    """How many web processes to run by default, for `gunicorn.conf.py` and `petitionbot
    serve` alike (WEB_CONCURRENCY, when set, wins): (2 x cores) + 1 on PostgreSQL, whose
    requests wait on round trips; one per core on SQLite, whose writers take turns on a
    lock file. Several processes count the same reply budget and login throttle either
    way: both are kept in the database, not in a process (nor in Redis)."""
    sqlite = database_url.strip().split(":", 1)[0].split("+", 1)[0].lower() in ("sqlite", "")
    return max(1, cores) if sqlite else 2 * max(1, cores) + 1
