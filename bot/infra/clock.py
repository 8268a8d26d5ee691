"""The wall clock, in UTC: what every `clock=` parameter and `now` defaults to."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
