"""Moving windows: how many hits fit in the last `window` seconds. Pure: the caller keeps the
hits (on the person's row for the reply budget, in `rate_windows` for the login throttle)
and reads and writes them inside a transaction that holds the row, which makes the count
exact across threads and processes without Redis.

The reply budget: nobody can make the bot send unbounded messages. In any window a person
(all their channels together) gets at most `per_window` answered messages, then one notice,
then silence until the window has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    REPLY = "reply"
    NOTICE = "notice"   # first message over budget: tell them once
    SILENT = "silent"


def hit(hits: Sequence[float], now: float, limit: int,
        window: float) -> tuple[bool, list[float]]:
    """Whether one more hit at `now` fits, and the hits to keep (this one included if so).

    Hits older than the window are forgotten; at most `limit` are ever kept."""
    recent = [t for t in hits if t > now - window][-limit:] if limit > 0 else []
    if len(recent) < limit:
        return True, [*recent, now]
    return False, recent


@dataclass(frozen=True)
class Spent:
    verdict: Verdict
    reply_times: list[float]
    noticed_at: float | None  # when the over-budget notice was last sent (epoch seconds)


def spend(reply_times: Sequence[float] | None, noticed_at: float | None, now: float,
          per_window: int, window: float) -> Spent:
    """Count one answered message for this person and say whether it may be answered."""
    allowed, kept = hit(reply_times or (), now, per_window, window)
    if allowed:
        return Spent(Verdict.REPLY, kept, noticed_at)
    if noticed_at is None or noticed_at <= now - window:
        return Spent(Verdict.NOTICE, kept, now)
    return Spent(Verdict.SILENT, kept, noticed_at)


__all__ = ["Spent", "Verdict", "hit", "spend"]
