"""Telegram at the edge: updates in, replies out, through python-telegram-bot.

The same `process_update` serves long polling (PTB's Application owns the loop) and the
webhook (a `TelegramGateway` owns one event loop in a thread, so sync WSGI views can hand
it coroutines; PTB's update queue is never used from a view). State lives in the database,
never in PTB's per-process conversation or user data.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

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

from bot.core.conversation import Channel
from bot.core.outcomes import Job, Result, SendResult
from bot.core.phones import normalise_phone
from bot.core.render import Message, Rendered, render
from bot.infra import logs, metrics
from bot.infra.db_errors import database_unavailable
from bot.shell import staff_commands
from bot.shell.service import Received, Service

log = logging.getLogger("petitionbot.telegram")
T = TypeVar("T")

ALLOWED_UPDATES = ["message", "callback_query"]
SEND_ATTEMPTS = 4
MAX_RETRY_WAIT = 30.0
MAX_ID = 2**63 - 1  # Telegram's ids fit in 52 bits; anything past 64 is not from Telegram


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


def retry_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wait = error.retry_after
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)


async def _quietly(call: Coroutine[Any, Any, Any]) -> None:
    try:
        await call
    except TelegramError as error:
        log.info("telegram call failed: %s", type(error).__name__)


def make_bot(token: str, base_url: str) -> Bot:
    return Bot(token, base_url=base_url)


class TelegramGateway:
    """One Bot on one event loop owned by a daemon thread, for synchronous callers.

    Starting needs no network. getMe (the bot's name, a check of the token) is asked on
    first use and asked again on later use until Telegram answers: a worker started while
    Telegram is unreachable still handles updates, whose state is in the database."""

    INIT_TIMEOUT = 15.0  # seconds for getMe: PTB's own timeouts (5 s each) end it sooner

    def __init__(self, token: str, base_url: str, retry_interval: float = 10.0) -> None:
        self.token = token
        self.base_url = base_url
        # After a failed getMe, `initialised()` waits this long before asking again, so
        # an unreachable Telegram costs one slow request per interval, not every request.
        self.retry_interval = retry_interval
        self._lock = threading.Lock()
        self._init_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bot: Bot | None = None
        self._ready = False
        self._failed_at: float | None = None

    @property
    def bot(self) -> Bot:
        """The Bot, initialised; raises what getMe raised (NetworkError, TimedOut ...) when
        Telegram cannot be reached, and asks again on the next use."""
        bot = self.unchecked_bot
        if not self._ready:
            with self._init_lock:
                self._initialise()
        return bot

    @property
    def unchecked_bot(self) -> Bot:
        """The Bot on the running loop, initialised or not: enough to read updates and to
        record their effect without Telegram."""
        self._start()
        assert self._bot is not None
        return self._bot

    def initialised(self) -> bool:
        """Whether the Bot knows itself (getMe answered), asking Telegram now unless it
        failed less than `retry_interval` seconds ago; never raises for Telegram's sake."""
        self._start()
        if self._ready:
            return True
        with self._init_lock:
            if self._ready:
                return True
            if self._failed_at is not None and (
                    time.monotonic() - self._failed_at < self.retry_interval):
                return False
            try:
                self._initialise()
            except (TelegramError, TimeoutError) as error:
                log.warning("telegram unreachable (getMe: %s); will ask again",
                            type(error).__name__)
                return False
            return True

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the owned loop and wait for its result."""
        self._start()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._loop is not None:
                return
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="telegram-loop", daemon=True).start()
            self._loop, self._bot = loop, make_bot(self.token, self.base_url)

    def _initialise(self) -> None:
        """getMe, with _init_lock held; remembers a failure's time for `initialised()`."""
        assert self._loop is not None and self._bot is not None
        future = asyncio.run_coroutine_threadsafe(self._bot.initialize(), self._loop)
        try:
            future.result(self.INIT_TIMEOUT)
        except BaseException:
            future.cancel()
            self._failed_at = time.monotonic()
            raise
        self._ready, self._failed_at = True, None

    def close(self) -> None:
        with self._lock:
            if self._loop is None or self._bot is None:
                return
            with contextlib.suppress(TelegramError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self._bot.shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = self._bot = None
            self._ready, self._failed_at = False, None


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


class TelegramSender:
    """Broadcast sends through the process's TelegramGateway, errors in our words."""

    def __init__(self, gateway: TelegramGateway) -> None:
        self.gateway = gateway

    def prepare(self) -> None:
        """Start the gateway (its event loop, getMe) before the first paced send."""
        _ = self.gateway.bot

    def send(self, job: Job) -> SendResult:
        from telegram.error import TimedOut

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
