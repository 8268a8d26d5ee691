"""Sending to Telegram outside a conversation: broadcasts through the process's gateway,
with Telegram's errors in our words (SendResult), and how long a flood wait asks for."""

from __future__ import annotations

import html
import warnings
from datetime import timedelta

from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.channels.telegram.gateway import TelegramGateway
from bot.core.outcomes import Job, Result, SendResult


def retry_seconds(error: RetryAfter) -> float:
    """The seconds a flood wait asks for (PTB gives them as a number or a timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wait = error.retry_after
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)


class TelegramSender:
    """Broadcast sends through the process's TelegramGateway, errors in our words."""

    def __init__(self, gateway: TelegramGateway) -> None:
        self.gateway = gateway

    def prepare(self) -> None:
        """Start the gateway (its event loop, getMe) before the first paced send."""
        _ = self.gateway.bot

    def send(self, job: Job) -> SendResult:
        try:
            message = self.gateway.run(self.gateway.bot.send_message(
                int(job.address), html.escape(job.text, quote=False), parse_mode=ParseMode.HTML),
                timeout=60)
        except RetryAfter as error:
            return SendResult(Result.RETRY, error="429", retry_after=retry_seconds(error))
        except ChatMigrated as error:
            return SendResult(Result.MOVED, error="migrated", new_address=str(error.new_chat_id))
        except Forbidden:
            return SendResult(Result.UNREACHABLE, error="403")
        except TimedOut:
            return SendResult(Result.UNKNOWN, error="timeout")  # it may have gone out
        except BadRequest as error:
            return SendResult(Result.FAILED, error=f"400 {error.message[:30]}")
        except NetworkError:
            return SendResult(Result.RETRY, error="network")
        except TelegramError as error:
            return SendResult(Result.FAILED, error=type(error).__name__[:40])
        return SendResult(Result.SENT, provider_id=str(message.message_id))
