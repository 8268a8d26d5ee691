"""Logging for every process: one line per event, readable, or JSON with `LOG_FORMAT=json`,
each with the request id of the message or send it belongs to.

Names and message texts are never handed to a logger (bot.shell.service logs ids, steps and
outcomes). `Redact`, on every handler, is the last line of defence for whatever slips
through anyway (a library, a traceback): anything that looks like a phone number is masked,
and the deployment's secrets (bot token, auth tokens) are replaced, before a line is written.

Imported by gunicorn's master process (gunicorn.conf.py), so: standard library only.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
import secrets
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("petitionbot_request_id",
                                                                 default="-")

FORMATS = ("text", "json")
SECRET_VARIABLES = ("TELEGRAM_BOT_TOKEN", "TWILIO_AUTH_TOKEN", "TELEGRAM_WEBHOOK_SECRET",
                    "METRICS_TOKEN", "SECRET_KEY")
URL_VARIABLES = ("DATABASE_URL", "REDIS_URL")  # their passwords are secrets too

# 9 to 15 digits, perhaps after a "+", perhaps with spaces, hyphens or brackets between them,
# and not inside a longer word (a Twilio SID, a hex id): E.164, UK national and most
# international spellings, and Telegram chat ids, which identify a person just as well.
PHONE = re.compile(r"(?<![\w+])\+?\(?\d(?:[ ()\-]{0,2}\d){8,14}(?!\w)")
DIGIT = re.compile(r"\d")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")  # "2026-11-27 21" is a time, not a number
# A Telegram bot token: the bot's id, a colon, 35 characters (also inside a Bot API URL).
BOT_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "request_id", "taskName"}


def new_request_id() -> str:
    return secrets.token_hex(8)


def mask_phone(number: str) -> str:
    """+447700900123 -> +447*******23: enough to tell two apart, not enough to call."""
    digits = [i for i, c in enumerate(number) if c.isdigit()]
    keep = set(digits[:3] + digits[-2:])
    return "".join(c if (i in keep or not c.isdigit()) else "*" for i, c in enumerate(number))


class Redact(logging.Filter):
    """Masks phone numbers and replaces secrets in the message, its extras and traceback;
    stamps the record with the current request id."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[secret]")
        if DIGIT.search(text) is None:  # neither a number nor a bot token can be in it
            return text
        text = BOT_TOKEN.sub("[secret]", text)
        return PHONE.sub(_mask_match, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        record.msg, record.args = self.redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = format_exception(record.exc_info[1])
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def format_exception(error: BaseException) -> str:
    """A traceback (with its causes) in which a database error shows only its first line
    and its SQL: PostgreSQL's DETAIL quotes the row or key ("Failing row contains (...)",
    "Key (phone)=(...)"), names and numbers included."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for n, exc in enumerate(reversed(chain)):
        if n:
            parts.append("\nThe above exception led to the following one:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(exc.__traceback__))
        kind = type(exc)
        parts.append(f"{kind.__module__}.{kind.__qualname__}: {_message(exc)}\n")
    return "".join(parts).rstrip("\n")


def _message(error: BaseException) -> str:
    text = str(error)
    if not (hasattr(error, "diag") or hasattr(error, "orig")):  # not from a database
        return text
    first = text.splitlines()[0] if text else ""
    statement = getattr(error, "statement", None)
    return f"{first} [SQL: {statement}]" if statement else first


def _mask_match(match: re.Match[str]) -> str:
    found = match.group()
    return found if DATE.match(found) else mask_phone(found)


class TextFormatter(logging.Formatter):
    """`2026-11-27 10:00:00,123 INFO petitionbot.inbound [3f2a...] inbound channel=sms ...`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then the extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=str, ensure_ascii=False)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The deployment's secrets, as they appear in the environment."""
    env = os.environ if environ is None else environ
    found = [env.get(name, "").strip() for name in SECRET_VARIABLES]
    for name in URL_VARIABLES:
        try:
            found.append(urlsplit(env.get(name, "")).password or "")
        except ValueError:
            continue
    return [s for s in found if s]


def log_format(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    chosen = env.get("LOG_FORMAT", "").strip().lower() or "text"
    if chosen not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}")
    return chosen


def dict_config(level: str = "INFO", fmt: str | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A logging.config.dictConfig for this process (gunicorn's `logconfig_dict` too):
    everything, gunicorn's own lines included, to standard error through `Redact`."""
    fmt = fmt or log_format(environ)
    formatter = "bot.infra.logs.JsonFormatter" if fmt == "json" else "bot.infra.logs.TextFormatter"
    handler = {"level": level, "handlers": ["stderr"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "bot.infra.logs.Redact", "secrets": secret_values(environ)}},
        "formatters": {"petitionbot": {"()": formatter}},
        "handlers": {"stderr": {"class": "bot.infra.logs.StderrHandler",
                                "formatter": "petitionbot", "filters": ["redact"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": handler, "gunicorn.access": handler,
                    "alembic": {"level": "WARNING"}},  # its INFO lines are for developers
    }


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is written, so a redirection made
    after logging was set up (a test runner's, a supervisor's) is followed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: int | str = logging.INFO, fmt: str | None = None,
              environ: Mapping[str, str] | None = None) -> None:
    """Set up logging for a `petitionbot` command: our handler on the root logger (replacing
    ours from an earlier call, leaving anyone else's), standard error, redacted."""
    env = os.environ if environ is None else environ
    handler = make_handler(None, fmt or log_format(env), secret_values(env))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "petitionbot", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a library's warnings become lines like any other


def make_handler(stream: Any, fmt: str = "text", secrets: Iterable[str] = ()) -> logging.Handler:
    """The handler `configure` installs: on `stream`, or on standard error when None."""
    handler = StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Redact(secrets))
    handler.petitionbot = True  # type: ignore[attr-defined]
    return handler
