"""Telegram updates in, and the replies to them out, through python-telegram-bot.

`process_update` is the one way an update is handled, for both ways updates arrive: long
polling (`run_polling`: PTB's Application owns the loop) and the webhook (`handle_webhook`:
the process's TelegramGateway owns one event loop in a thread, so a sync WSGI view can hand
it coroutines; PTB's update queue is never used from a view). An update's effect is
recorded once (Service.receive), then its replies are sent (`deliver`). State lives in the
database, never in PTB's per-process conversation or user data.

The webhook answers 200 to anything but a wrong secret (DESIGN §8): a body that is not a
usable Update is logged once and ignored (Telegram re-sends on any non-2xx, so refusing it
would only bring it back), and when Telegram itself cannot be reached the update's effect
is still recorded; only its replies are lost. An unavailable database is the one retry.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.channels.telegram.gateway import TelegramGateway, make_bot
from bot.channels.telegram.outbound import retry_seconds
from bot.core.conversation import Channel
from bot.core.phones import normalise_phone
from bot.core.render import Message, Rendered, render
from bot.infra import logs, metrics
from bot.infra.db_errors import database_unavailable
from bot.shell import staff_commands
from bot.shell.service import Received, Service

log = logging.getLogger("petitionbot.telegram")

ALLOWED_UPDATES = ["message", "callback_query"]
SEND_ATTEMPTS = 4
MAX_RETRY_WAIT = 30.0
MAX_ID = 2**63 - 1  # Telegram's ids fit in 52 bits; anything past 64 is not from Telegram
WEBHOOK_PATIENCE = 15.0  # seconds a webhook request waits for its replies to be sent


# Reading an update ------------------------------------------------------------------------

class MalformedUpdate(ValueError):
    """An update no Telegram server sent: a field of a type the Bot API never uses."""


def parse(update: Update) -> Received | None:
    """The inbound message an update carries, or None for updates the bot ignores.

    `Update.de_json` checks no types, so a forged update may carry a text that is a number
    or a chat id that is a string: MalformedUpdate, rather than handing such a value on."""
    chat = update.effective_chat
    user = update.effective_user
    if chat is None or user is None or chat.type != "private" or user.is_bot:
        return None
    if not (_is_id(update.update_id) and _is_id(chat.id) and _is_id(user.id)):
        raise MalformedUpdate("an id is not a 64-bit integer")
    provider_id = str(update.update_id)
    address = str(chat.id)
    if update.callback_query is not None:
        data = update.callback_query.data
        if not _is_text(data):
            raise MalformedUpdate("callback data is not text")
        return Received(Channel.TELEGRAM, address, data or "", provider_id)
    message = update.message
    if message is None:
        return None
    if message.contact is not None:
        number = message.contact.phone_number
        if not isinstance(number, str):
            raise MalformedUpdate("a contact's phone number is not text")
        own = message.contact.user_id == user.id  # only the sender's own number links
        phone = normalise_phone(_with_plus(number)) if own else None
        return Received(Channel.TELEGRAM, address, "", provider_id, phone=phone or "",
                        contact="own" if phone else "other")
    if not (_is_text(message.text) and _is_text(message.caption)):
        raise MalformedUpdate("a message's text is not text")
    return Received(Channel.TELEGRAM, address, message.text or message.caption or "",
                    provider_id)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_ID


def _is_text(value: object) -> bool:
    return value is None or isinstance(value, str)


def _with_plus(number: str) -> str:
    # Telegram usually sends international numbers without the leading "+".
    number = number.strip()
    return number if number.startswith("+") else "+" + number


# Handling it, and the replies -------------------------------------------------------------

def markup(rendered: Rendered) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    if rendered.contact_button:
        return ReplyKeyboardMarkup([[KeyboardButton(rendered.contact_button,
                                                    request_contact=True)]],
                                   one_time_keyboard=True, resize_keyboard=True)
    if not rendered.buttons:
        return None
    rows = [list(rendered.buttons[i:i + 2]) for i in range(0, len(rendered.buttons), 2)]
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)
                                  for label, data in row] for row in rows])


async def process_update(update: Update, bot: Bot, service: Service,
                         patience: float = 120.0, send: bool = True) -> None:
    """Handle one update: record its effect once, then send the replies. With `send`
    False (Telegram cannot be reached just now) the effect is still recorded: the state
    is in the database, and only the replies are lost."""
    query = update.callback_query
    if query is not None and send:
        await _quietly(query.answer())  # every press is answered, even a replayed one
    received = parse(update)
    if received is None:
        return
    user = update.effective_user
    if user is not None and user.id in service.config.staff.telegram_ids and (
            staff_commands.is_staff_command(received.text)):
        replies = await asyncio.to_thread(staff_commands.handle, service, user.id,
                                          received.text, received.provider_id)
        for reply in replies if send else ():
            keyboard = InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)
                                              for label, data in reply.buttons]])
            await _quietly(bot.send_message(int(received.address),
                                            html.escape(reply.text, quote=False),
                                            parse_mode=ParseMode.HTML,
                                            reply_markup=keyboard if reply.buttons else None))
        return
    handled = await asyncio.to_thread(service.receive, received)
    if handled.duplicate:
        return
    if not send:
        if handled.replies:
            log.warning("telegram unreachable: %d replies not sent", len(handled.replies))
        return
    if query is not None and query.message is not None and handled.replies:
        # The pressed keyboard has done its job; leave the text, drop the buttons.
        await _quietly(bot.edit_message_reply_markup(chat_id=received.address,
                                                     message_id=query.message.message_id,
                                                     reply_markup=None))
    await deliver(bot, service, int(received.address), handled.replies, patience)


async def deliver(bot: Bot, service: Service, chat_id: int, messages: Sequence[Message],
                  patience: float = 120.0) -> None:
    """Send replies in order, honouring flood waits, migrations and blocked chats, waiting
    no more than `patience` seconds in all (a webhook must answer before its server's
    timeout; the inbound message's effect is already committed either way)."""
    deadline = time.monotonic() + patience
    for message in messages:
        rendered = render(message, Channel.TELEGRAM)
        for attempt in range(1, SEND_ATTEMPTS + 1):
            if time.monotonic() > deadline:
                log.warning("telegram replies given up: waited %.0fs", patience)
                return
            try:
                await bot.send_message(chat_id, rendered.text, parse_mode=ParseMode.HTML,
                                       reply_markup=markup(rendered),
                                       link_preview_options=None)
                break
            except RetryAfter as error:
                wait = min(retry_seconds(error), MAX_RETRY_WAIT)
                metrics.observe_wait("telegram", "provider", wait)
                if time.monotonic() + wait > deadline:
                    log.warning("telegram replies given up: flood wait of %.0fs", wait)
                    return
                await asyncio.sleep(wait)
            except ChatMigrated as error:
                await asyncio.to_thread(service.move_address, Channel.TELEGRAM, str(chat_id),
                                        str(error.new_chat_id))
                chat_id = error.new_chat_id
            except Forbidden:
                metrics.observe_provider_error("telegram", "403")
                log.info("telegram chat unreachable (blocked or deleted); marked")
                await asyncio.to_thread(service.mark_unreachable, Channel.TELEGRAM,
                                        str(chat_id))
                return
            except BadRequest as error:
                metrics.observe_provider_error("telegram", "400")
                log.warning("telegram reply refused: %s", error.message[:60])
                return
            except NetworkError as error:
                metrics.observe_provider_error("telegram", "network")
                if attempt == SEND_ATTEMPTS:
                    log.warning("telegram reply not sent after %d attempts: %s", attempt,
                                type(error).__name__)
                    return
                await asyncio.sleep(0.5 * 2 ** attempt)
            except TelegramError as error:
                log.warning("telegram reply refused: %s", type(error).__name__)
                return


async def _quietly(call: Coroutine[Any, Any, Any]) -> None:
    try:
        await call
    except TelegramError as error:
        log.info("telegram call failed: %s", type(error).__name__)


# Long polling ------------------------------------------------------------------------------

async def handle_polled(update: Update, bot: Bot, service: Service,
                        running: Callable[[], bool], first_delay: float = 1.0) -> None:
    """One polled update, never holding up the next: the offset moves past an update once
    fetched, so while the database is unavailable this update is retried (its effect must
    not be lost); any other error is this update's alone: logged once, and the poller
    moves on."""
    delay = first_delay
    while running():
        try:
            await process_update(update, bot, service)
            return
        except Exception as error:
            if not database_unavailable(error):
                # The type, where it was raised and the update's number: never the
                # exception's message, which may quote what the supporter wrote.
                log.error("telegram update %s dropped: %s at %s", _id_for_log(update),
                          type(error).__name__, raised_at(error))
                return
            log.warning("database unavailable (%s); retrying update in %.0fs",
                        type(error).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    log.error("stopping with update %s unhandled: the database was unavailable",
              _id_for_log(update))


def raised_at(error: BaseException) -> str:
    """"module.py:123": where an exception was raised, for a log line without its message."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _id_for_log(update: Update) -> str:
    return str(update.update_id) if _is_id(update.update_id) else "?"


def run_polling(service: Service, token: str, base_url: str) -> None:
    """Long polling until SIGINT or SIGTERM (no public URL needed); removes any webhook."""
    from telegram.ext import Application, ContextTypes, TypeHandler

    async def on_update(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        logs.request_id.set(logs.new_request_id())  # this task's log lines, this update's id
        await handle_polled(update, context.bot, service, lambda: context.application.running)

    async def post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        service.telegram_username = application.bot.username or ""
        log.info("telegram polling started")

    application = (Application.builder().token(token).base_url(base_url)
                   .post_init(post_init).build())
    application.add_handler(TypeHandler(Update, on_update))
    application.run_polling(allowed_updates=ALLOWED_UPDATES)
    log.info("telegram polling stopped")


async def set_webhook(token: str, base_url: str, url: str, secret: str) -> bool:
    async with make_bot(token, base_url) as bot:
        return await bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)


# The webhook -------------------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookAnswer:
    """What the webhook answers Telegram: 200, or 503 with Retry-After (Telegram retries)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def secret_matches(given: str, secret: str) -> bool:
    """Whether X-Telegram-Bot-Api-Secret-Token is our webhook secret (never if none is set)."""
    return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())


def handle_webhook(gateway: TelegramGateway, service: Service, body: bytes) -> WebhookAnswer:
    """One webhook request's body, handled on the gateway's loop while the request waits,
    so an unavailable database becomes a 503 (raised) that Telegram retries, and a retried
    update is a no-op. Works under gunicorn's sync and threaded workers alike."""
    update, problem = read_update(body, gateway.unchecked_bot)
    if update is None:
        log.warning("telegram update ignored: %s", problem)
        return WebhookAnswer()
    send = gateway.initialised()  # getMe; asked again on a later request if it failed
    if send and gateway.bot.username:
        service.telegram_username = gateway.bot.username
    # Well inside gunicorn's worker timeout: a long flood wait drops the reply, never the
    # worker (the message's effect is committed before any reply is sent).
    try:
        gateway.run(process_update(update, gateway.unchecked_bot, service,
                                   patience=WEBHOOK_PATIENCE, send=send),
                    timeout=WEBHOOK_PATIENCE + 5)
    except TimeoutError:
        # Stuck, most likely waiting for the database: Telegram's retry is a no-op if the
        # effect was committed after all, and handles the update if it was not.
        log.warning("telegram update not handled in %.0fs; Telegram will retry",
                    WEBHOOK_PATIENCE + 5)
        return WebhookAnswer(503, {"Retry-After": "5"})
    except Exception as error:
        if database_unavailable(error):
            raise  # a 503: Telegram retries it once the database is back
        # Anything else would fail again on every retry, and Telegram holds back this
        # chat's later updates while it retries: drop this one (as the poller does), with
        # where it failed and never what it said.
        log.error("telegram update %s dropped: %s at %s", update.update_id,
                  type(error).__name__, raised_at(error))
    return WebhookAnswer()


def read_update(body: bytes, bot: Bot) -> tuple[Update | None, str]:
    """The Update a request body holds, or None and why not, in words that quote nothing
    of the body (it may be a supporter's message)."""
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, "not JSON"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    update_id = data.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int) or not (
            0 <= update_id <= MAX_ID):
        return None, "no usable update_id"
    try:
        update = Update.de_json(data, bot)
        parse(update)  # what the handling will read of it must be readable
    except Exception as error:  # de_json raises whatever a field of the wrong type causes
        return None, f"malformed ({type(error).__name__})"
    return update, ""
