"""Per-sender reply budget: nobody can make the bot send unbounded messages.

A sender over budget gets one notice, then silence until the window has passed. Keys are
hashes, so the rate-limit storage (memory or Redis) never holds a phone number.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


class Verdict(StrEnum):
    REPLY = "reply"
    NOTICE = "notice"   # first message over budget: tell them once
    SILENT = "silent"


class Budget(Protocol):
    def spend(self, channel: str, address: str) -> Verdict: ...


class ReplyBudget:
    """Shared through Redis (the `limits` library's moving window) across processes."""

    def __init__(self, per_window: int, window_seconds: int, storage_url: str = "memory://"):
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_url))
        self.replies = RateLimitItemPerSecond(per_window, window_seconds)
        self.notices = RateLimitItemPerSecond(1, window_seconds)

    @classmethod
    def for_deployment(cls, per_window: int, window_seconds: int,
                       redis_url: str) -> Budget:
        """Shared through Redis when REDIS_URL is set (several processes), else in-process."""
        if redis_url:
            return cls(per_window, window_seconds, redis_url)
        return LocalReplyBudget(per_window, window_seconds)

    def spend(self, channel: str, address: str) -> Verdict:
        """Count one reply to this sender and say whether it may be sent."""
        key = _key(channel, address)
        if self.limiter.hit(self.replies, "petitionbot-replies", key):
            return Verdict.REPLY
        if self.limiter.hit(self.notices, "petitionbot-notice", key):
            return Verdict.NOTICE
        return Verdict.SILENT


class LocalReplyBudget:
    """The same moving window inside one process, with lazy expiry.

    (The `limits` memory storage runs a timer that scans every key a hundred times a
    second, which costs more than the messages themselves once many people are writing.)
    """

    def __init__(self, per_window: int, window_seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_window = per_window
        self.window = float(window_seconds)
        self.clock = clock
        self.hits: dict[str, deque[float]] = {}
        self.noticed: dict[str, float] = {}
        self.lock = threading.Lock()
        self.next_sweep = 0.0

    def spend(self, channel: str, address: str) -> Verdict:
        key = _key(channel, address)
        now = self.clock()
        with self.lock:
            if now >= self.next_sweep:
                self._sweep(now)
            hits = self.hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) < self.per_window:
                hits.append(now)
                return Verdict.REPLY
            if self.noticed.get(key, -self.window) <= now - self.window:
                self.noticed[key] = now
                return Verdict.NOTICE
            return Verdict.SILENT

    def _sweep(self, now: float) -> None:
        """Forget senders whose window has passed (at most once a window)."""
        cutoff = now - self.window
        self.hits = {k: v for k, v in self.hits.items() if v and v[-1] > cutoff}
        self.noticed = {k: t for k, t in self.noticed.items() if t > cutoff}
        self.next_sweep = now + self.window


def _key(channel: str, address: str) -> str:
    return hashlib.sha256(f"{channel}:{address}".encode()).hexdigest()[:32]


class LocalWindowLimiter:
    """`limits`' moving-window limiter API (test, hit, clear) inside one process.

    The `limits` memory storage keeps a non-daemon timer thread re-arming itself, which
    both costs CPU and keeps a process from exiting on a signal.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.hits: dict[tuple[str, ...], deque[float]] = {}
        self.lock = threading.Lock()

    def _window(self, item: Any, identifiers: tuple[str, ...], now: float) -> deque[float]:
        key = (item.key_for(), *identifiers)
        hits = self.hits.setdefault(key, deque())
        while hits and hits[0] <= now - item.get_expiry():
            hits.popleft()
        return hits

    def test(self, item: Any, *identifiers: str) -> bool:
        with self.lock:
            return bool(len(self._window(item, identifiers, self.clock())) < item.amount)

    def hit(self, item: Any, *identifiers: str, cost: int = 1) -> bool:
        now = self.clock()
        with self.lock:
            hits = self._window(item, identifiers, now)
            if len(hits) + cost > item.amount:
                return False
            hits.extend([now] * cost)
            return True

    def clear(self, item: Any, *identifiers: str) -> None:
        with self.lock:
            self.hits.pop((item.key_for(), *identifiers), None)
