"""Send pacing (bot/infra/pacing.py) in one process: slots spaced by 1/rate (with headroom), and
admission that never lets more than `rate` sends through in any second plus a margin, even
when sends leave late. The same rules run in Redis for several processes
(tests/e2e/test_workers.py measures them at the fake providers)."""

from __future__ import annotations

import itertools
import time

import pytest

from bot.infra.pacing import CATCH_UP, HEADROOM, MARGIN, LocalPacer


def test_slots_are_spaced_by_a_little_more_than_one_over_the_rate() -> None:
    pacer = LocalPacer({"sms": 10})
    delays = [pacer.reserve("sms") or 0.0 for _ in range(4)]
    interval = 1 / (10 * HEADROOM)
    assert delays[0] == pytest.approx(0, abs=0.01)
    for before, after in itertools.pairwise(delays):
        assert after - before == pytest.approx(interval, abs=0.01)


def test_a_channel_without_a_rate_is_not_paced() -> None:
    pacer = LocalPacer({"sms": 10})
    assert pacer.reserve("telegram") is None
    assert [pacer.admit("telegram") for _ in range(100)] == [0.0] * 100


def test_admission_lets_rate_sends_through_then_waits_for_the_oldest_to_age() -> None:
    pacer = LocalPacer({"whatsapp": 5})
    assert [pacer.admit("whatsapp") for _ in range(5)] == [0.0] * 5
    wait = pacer.admit("whatsapp")  # a sixth, at once: not before the first is 1 s old
    assert 1 < wait <= 1 + MARGIN
    assert pacer.admit("whatsapp") > 1  # refused sends are not counted


def test_a_fractional_rate_admits_its_whole_part_per_second() -> None:
    pacer = LocalPacer({"sms": 2.5})
    assert [pacer.admit("sms") for _ in range(2)] == [0.0, 0.0]
    assert pacer.admit("sms") > 1


def test_sends_on_time_are_never_held_back_by_admission() -> None:
    # rate + 1 slots span rate / (rate * HEADROOM) seconds: more than admission's window.
    assert 1 / HEADROOM > 1 + MARGIN


def test_a_pause_moves_the_next_slot() -> None:
    pacer = LocalPacer({"telegram": 25})
    pacer.pause("telegram", 3)
    delay = pacer.reserve("telegram")
    assert delay is not None and 2.9 < delay <= 3


def test_a_short_hold_up_keeps_to_the_grid_a_long_gap_starts_afresh() -> None:
    pacer = LocalPacer({"sms": 10})
    interval = 1 / (10 * HEADROOM)
    missed = time.monotonic() - 0.8 * interval  # a slot missed by less than CATCH_UP
    pacer.next["sms"] = missed
    assert pacer.reserve("sms") == 0.0  # taken late, at once ...
    assert pacer.next["sms"] == pytest.approx(missed + interval)  # ... the next one on time
    pacer.next["sms"] = time.monotonic() - 2 * CATCH_UP
    assert pacer.reserve("sms") == 0.0
    assert pacer.next["sms"] == pytest.approx(time.monotonic() + interval, abs=0.01)
