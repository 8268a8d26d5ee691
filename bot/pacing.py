"""Send pacing per channel, shared by every worker: at most `rate` messages in any second.

A generic cell rate algorithm: each send reserves the next slot, `1/rate` after the last
one, so sends are evenly spaced rather than bursting at the top of each second. Slots are
kept in Redis when several processes send (the reservation is one atomic script, timed by
Redis's own clock), else in this process.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

# Slots are spaced a little wider than 1/rate, so that the jitter between reserving a slot
# and the provider receiving the request cannot put rate+1 sends into one second.
HEADROOM = 0.97

RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, last + interval)
redis.call('SET', KEYS[1], tostring(slot), 'PX', 60000)
return tostring(slot - now)
"""

PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > last then redis.call('SET', KEYS[1], tostring(until_), 'PX', 600000) end
return 1
"""


class Pacer(Protocol):
    def wait(self, channel: str) -> float: ...
    def reserve(self, channel: str) -> float | None: ...
    def pause(self, channel: str, seconds: float) -> None: ...


class LocalPacer:
    """Pacing inside one process (one worker, or tests)."""

    def __init__(self, rates: dict[str, float], sleep: Any = time.sleep) -> None:
        self.intervals = {c: 1 / (r * HEADROOM) for c, r in rates.items() if r}
        self.next: dict[str, float] = {}
        self.lock = threading.Lock()
        self.sleep = sleep

    def wait(self, channel: str) -> float:
        """Block until this channel may send; return how long that took."""
        delay = self.reserve(channel) or 0.0
        if delay > 0:
            self.sleep(delay)
        return delay

    def reserve(self, channel: str) -> float | None:
        """Take the channel's next slot without waiting: seconds until it (None: no limit)."""
        interval = self.intervals.get(channel)
        if interval is None:
            return None
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next.get(channel, 0.0))
            self.next[channel] = slot + interval
        return slot - now

    def pause(self, channel: str, seconds: float) -> None:
        with self.lock:
            self.next[channel] = max(self.next.get(channel, 0.0), time.monotonic() + seconds)


class RedisPacer:
    """Pacing shared by every worker process through Redis."""

    def __init__(self, rates: dict[str, float], url: str, prefix: str = "petitionbot:pace:"):
        import redis

        self.client = redis.Redis.from_url(url)
        self.intervals = {c: 1 / (r * HEADROOM) for c, r in rates.items() if r}
        self.prefix = prefix
        self.script = self.client.register_script(RESERVE)
        self.hold = self.client.register_script(PAUSE)

    def wait(self, channel: str) -> float:
        delay = self.reserve(channel) or 0.0
        if delay > 0:
            time.sleep(delay)
        return delay

    def reserve(self, channel: str) -> float | None:
        """Take the channel's next slot without waiting: seconds until it (None: no limit)."""
        interval = self.intervals.get(channel)
        if interval is None:
            return None
        return float(self.script(keys=[self.prefix + channel], args=[interval]))

    def pause(self, channel: str, seconds: float) -> None:
        self.hold(keys=[self.prefix + channel], args=[seconds])


def make_pacer(rates: dict[str, float], redis_url: str = "") -> Pacer:
    return RedisPacer(rates, redis_url) if redis_url else LocalPacer(rates)
