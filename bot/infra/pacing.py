"""Send pacing per channel, shared by every worker: at most `rate` messages in any second.

A generic cell rate algorithm: each send reserves the next slot, `1/rate` after the last
one, so sends are evenly spaced rather than bursting at the top of each second. Slots are
kept in Redis when several processes send (the reservation is one atomic script, timed by
Redis's own clock), else in this process.

A send that leaves late (its process was descheduled, a commit was slow) would bunch up
with the sends whose slots follow, so the moment of sending is checked too (`admit`): the
last `rate` sends actually made are remembered, and one more is let through only when the
oldest of them is more than a second (and a margin) old.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

# Slots are spaced a little wider than 1/rate, so that the jitter between reserving a slot
# and the provider receiving the request cannot put rate+1 sends into one second (40 ms of
# jitter is absorbed; the rate achieved is 0.96 of the configured one).
log = logging.getLogger("petitionbot.pacing")

REDIS_TIMEOUT = 1.0  # seconds: an unreachable Redis must not hold up a send for long
HEADROOM = 0.96
# A sender held up this long (a slow commit, the next batch's claim) may still take the
# slots it missed, so the rate achieved stays the rate configured; admission still keeps
# any second to `rate` sends. Longer gaps start afresh.
CATCH_UP = 0.1

RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = last + interval
if slot < now - tonumber(ARGV[2]) then slot = now end
redis.call('SET', KEYS[1], tostring(slot), 'PX', 60000)
return tostring(math.max(slot - now, 0))
"""

# Admission: the times of the last `rate` sends, newest first.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local count = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
if redis.call('LLEN', KEYS[1]) >= count then
  local wait = tonumber(redis.call('LINDEX', KEYS[1], count - 1)) + span - now
  if wait > 0 then return tostring(wait) end
end
redis.call('LPUSH', KEYS[1], string.format('%.6f', now))
redis.call('LTRIM', KEYS[1], 0, count - 1)
redis.call('PEXPIRE', KEYS[1], 60000)
return '0'
"""
# Sends admitted must be this much more than a second apart per `rate` of them (less than
# the spacing's own headroom, so that sends on time are never held back).
MARGIN = 0.04

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
    def admit(self, channel: str) -> float: ...
    def pause(self, channel: str, seconds: float) -> None: ...


class LocalPacer:
    """Pacing inside one process (one worker, or tests)."""

    def __init__(self, rates: dict[str, float], sleep: Any = time.sleep) -> None:
        self.intervals = {c: 1 / (r * HEADROOM) for c, r in rates.items() if r}
        self.counts = {c: max(int(r), 1) for c, r in rates.items() if r}
        self.next: dict[str, float] = {}
        self.sent: dict[str, deque[float]] = {}
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
            slot = self.next.get(channel, 0.0)
            if slot < now - CATCH_UP:
                slot = now
            self.next[channel] = slot + interval
        return max(slot - now, 0.0)

    def admit(self, channel: str) -> float:
        """Record a send now and return 0, or return how long to wait before trying again."""
        count = self.counts.get(channel)
        if count is None:
            return 0.0
        with self.lock:
            now = time.monotonic()
            sent = self.sent.setdefault(channel, deque(maxlen=count))
            if len(sent) == count and sent[0] + 1 + MARGIN > now:
                return sent[0] + 1 + MARGIN - now
            sent.append(now)
        return 0.0

    def pause(self, channel: str, seconds: float) -> None:
        with self.lock:
            self.next[channel] = max(self.next.get(channel, 0.0), time.monotonic() + seconds)


class RedisPacer:
    """Pacing shared by every worker process through Redis. Redis is an accelerator, never
    a single point of failure: while it cannot be reached, each process paces on its own
    (LocalPacer), so sending goes on (several workers may then go faster than the rate,
    and the provider's 429s are retried), and the shared pace resumes when Redis answers."""

    def __init__(self, rates: dict[str, float], url: str, prefix: str = "petitionbot:pace:"):
        import redis

        self.errors = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                           socket_timeout=REDIS_TIMEOUT)
        self.intervals = {c: 1 / (r * HEADROOM) for c, r in rates.items() if r}
        self.counts = {c: max(int(r), 1) for c, r in rates.items() if r}
        self.prefix = prefix
        self.script = self.client.register_script(RESERVE)
        self.admission = self.client.register_script(ADMIT)
        self.hold = self.client.register_script(PAUSE)
        self.local = LocalPacer(rates)
        self.down = False

    def _shared(self, call: Callable[[], float], alone: Callable[[], float]) -> float:
        try:
            result = call()
        except self.errors as error:
            if not self.down:
                log.warning("redis unavailable (%s): pacing in this process only",
                            type(error).__name__)
                self.down = True
            return alone()
        if self.down:
            log.info("redis available again: pacing shared")
            self.down = False
        return result

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
        return self._shared(
            lambda: float(self.script(keys=[self.prefix + channel], args=[interval, CATCH_UP])),
            lambda: self.local.reserve(channel) or 0.0)

    def admit(self, channel: str) -> float:
        """Record a send now and return 0, or return how long to wait before trying again."""
        count = self.counts.get(channel)
        if count is None:
            return 0.0
        return self._shared(
            lambda: float(self.admission(keys=[self.prefix + "sent:" + channel],
                                         args=[count, 1 + MARGIN])),
            lambda: self.local.admit(channel))

    def pause(self, channel: str, seconds: float) -> None:
        def alone() -> float:
            self.local.pause(channel, seconds)
            return 0.0

        self._shared(lambda: float(self.hold(keys=[self.prefix + channel], args=[seconds])
                                   or 0.0), alone)


def make_pacer(rates: dict[str, float], redis_url: str = "") -> Pacer:
    return RedisPacer(rates, redis_url) if redis_url else LocalPacer(rates)
