"""Per-sender reply budget: nobody can make the bot send unbounded messages.

A sender over budget gets one notice, then silence until the window has passed. Keys are
hashes, so the rate-limit storage (memory or Redis) never holds a phone number.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


class Verdict(StrEnum):
    REPLY = "reply"
    NOTICE = "notice"   # first message over budget: tell them once
    SILENT = "silent"


class ReplyBudget:
    def __init__(self, per_window: int, window_seconds: int, storage_url: str = "memory://"):
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_url))
        self.replies = RateLimitItemPerSecond(per_window, window_seconds)
        self.notices = RateLimitItemPerSecond(1, window_seconds)

    @classmethod
    def for_deployment(cls, per_window: int, window_seconds: int, redis_url: str) -> ReplyBudget:
        """Shared through Redis when REDIS_URL is set (several processes), else in-process."""
        return cls(per_window, window_seconds, redis_url or "memory://")

    def spend(self, channel: str, address: str) -> Verdict:
        """Count one reply to this sender and say whether it may be sent."""
        key = hashlib.sha256(f"{channel}:{address}".encode()).hexdigest()[:32]
        if self.limiter.hit(self.replies, "petitionbot-replies", key):
            return Verdict.REPLY
        if self.limiter.hit(self.notices, "petitionbot-notice", key):
            return Verdict.NOTICE
        return Verdict.SILENT
