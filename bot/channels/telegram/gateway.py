"""The process's one Bot, on an event loop of its own, for synchronous callers.

Sync WSGI views (the webhook) and the broadcast worker hand coroutines to a
`TelegramGateway`, which owns one event loop in a daemon thread and one python-telegram-bot
`Bot` on it. Starting it needs no network; getMe is asked on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from telegram import Bot
from telegram.error import TelegramError

log = logging.getLogger("petitionbot.telegram")
T = TypeVar("T")


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
