"""A send, as the outbox hands it to a provider's sender (Job), and what it came to, in our
words, whatever the provider said (SendResult)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass
class Job:
    """One claimed delivery, with what the sender needs."""

    delivery_id: int
    announcement_id: int
    identity_id: int
    channel: str
    address: str
    attempts: int
    last_inbound_at: dt.datetime | None
    text: str
    content_sid: str | None = None
    variables: dict[str, Any] | None = field(default=None)
    use_template: bool = False


class Result(StrEnum):
    SENT = "sent"                # the provider accepted it
    RETRY = "retry"              # nothing was sent; try again later (429, 5xx, no connection)
    FAILED = "failed"            # refused for good (other 4xx)
    UNKNOWN = "unknown"          # it may have gone out (no answer): never resend
    SKIPPED = "skipped"          # not sent on purpose (WhatsApp window without a template)
    OPTED_OUT = "opted_out"      # the provider says the recipient unsubscribed (21610)
    UNREACHABLE = "unreachable"  # the recipient blocked the bot or left (Telegram 403)
    TEMPLATE = "template"        # outside the WhatsApp window: send the template instead
    MOVED = "moved"              # the chat has a new address (Telegram ChatMigrated)


@dataclass(frozen=True)
class SendResult:
    result: Result
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    new_address: str | None = None
    used_template: bool = False
    seconds: float | None = None  # the provider call's duration, when measured (for logs)


class Sender(Protocol):
    def send(self, job: Job) -> SendResult: ...
