"""The moving window behind the reply budget and the login throttle (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.core.budget import Verdict, hit, spend


def test_a_flooding_person_gets_one_notice_then_silence_until_the_window_passes() -> None:
    times: list[float] = []
    noticed: float | None = None
    said = []
    for second in range(6):
        spent = spend(times, noticed, 1000.0 + second, per_window=3, window=600)
        times, noticed = spent.reply_times, spent.noticed_at
        said.append(spent.verdict)
    assert said == [Verdict.REPLY] * 3 + [Verdict.NOTICE, Verdict.SILENT, Verdict.SILENT]
    assert spend(times, noticed, 1601.0, 3, 600).verdict == Verdict.REPLY  # window passed


def test_the_notice_comes_again_only_in_a_later_window() -> None:
    full = [1000.0, 1001.0, 1002.0]
    first = spend(full, None, 1003.0, 3, 600)
    assert first.verdict == Verdict.NOTICE
    assert spend(full, first.noticed_at, 1500.0, 3, 600).verdict == Verdict.SILENT
    later = [1601.0, 1602.0, 1603.0]
    assert spend(later, first.noticed_at, 1604.0, 3, 600).verdict == Verdict.NOTICE


@given(st.lists(st.floats(0, 10_000), max_size=60), st.integers(1, 50),
       st.floats(1, 5_000))
def test_at_most_limit_hits_are_kept_and_counted(hits: list[float], limit: int,
                                                 window: float) -> None:
    now = 10_000.0
    allowed, kept = hit(sorted(hits), now, limit, window)
    recent = [t for t in hits if t > now - window]
    assert allowed == (len(recent) < limit)
    assert len(kept) <= limit
    assert all(t > now - window for t in kept)


@given(st.lists(st.floats(0, 3_000), min_size=1, max_size=200), st.integers(1, 20))
def test_in_any_window_at_most_the_limit_are_answered(arrivals: list[float],
                                                      limit: int) -> None:
    """Whatever the arrival times, no window of the budget's length holds more answered
    messages than the limit, and at most one notice (DESIGN §8)."""
    window = 600.0
    times: list[float] = []
    noticed: float | None = None
    answered, notices = [], []
    for now in sorted(arrivals):
        spent = spend(times, noticed, now, limit, window)
        times, noticed = spent.reply_times, spent.noticed_at
        (answered if spent.verdict == Verdict.REPLY else notices if (
            spent.verdict == Verdict.NOTICE) else []).append(now)
    for start in answered + notices:
        assert sum(start <= t < start + window for t in answered) <= limit
        assert sum(start <= t < start + window for t in notices) <= 1
