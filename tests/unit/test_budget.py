"""The per-sender reply budget, in-process and shared through Redis."""

from __future__ import annotations

import uuid

import pytest

from bot.budget import LocalReplyBudget, ReplyBudget, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flooding_sender_gets_one_notice_then_silence_until_the_window_passes() -> None:
    clock = Clock()
    budget = LocalReplyBudget(3, 600, clock=clock)
    said = [budget.spend("sms", "+447700900001") for _ in range(6)]
    assert said == [Verdict.REPLY] * 3 + [Verdict.NOTICE, Verdict.SILENT, Verdict.SILENT]
    assert budget.spend("sms", "+447700900002") == Verdict.REPLY  # someone else: unaffected
    assert budget.spend("whatsapp", "+447700900001") == Verdict.REPLY  # another channel
    clock.now += 601
    assert budget.spend("sms", "+447700900001") == Verdict.REPLY


def test_forgotten_senders_are_swept_and_keys_hold_no_phone_number() -> None:
    clock = Clock()
    budget = LocalReplyBudget(3, 60, clock=clock)
    for n in range(100):
        budget.spend("sms", f"+4477009{n:05d}")
    assert not any("+44" in key for key in budget.hits)
    clock.now += 61
    budget.spend("sms", "+447700999999")
    assert len(budget.hits) == 1


def test_the_redis_budget_is_shared_between_processes() -> None:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/7"
    try:
        redis.Redis.from_url(url).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    address = f"+4477{uuid.uuid4().int % 10**8:08d}"
    first, second = ReplyBudget(2, 60, url), ReplyBudget(2, 60, url)  # two processes
    assert [first.spend("sms", address), second.spend("sms", address)] == [Verdict.REPLY] * 2
    assert first.spend("sms", address) == Verdict.NOTICE
    assert second.spend("sms", address) == Verdict.SILENT


def test_the_local_window_limiter_speaks_the_limits_api() -> None:
    from limits import RateLimitItemPerSecond

    from bot.budget import LocalWindowLimiter

    clock = Clock()
    limiter = LocalWindowLimiter(clock=clock)
    five = RateLimitItemPerSecond(2, 900)
    assert limiter.test(five, "login", "k") and limiter.hit(five, "login", "k")
    assert limiter.hit(five, "login", "k") and not limiter.test(five, "login", "k")
    assert not limiter.hit(five, "login", "k") and limiter.test(five, "login", "other")
    limiter.clear(five, "login", "k")
    assert limiter.test(five, "login", "k")
    limiter.hit(five, "login", "k")
    limiter.hit(five, "login", "k")
    clock.now += 901
    assert limiter.test(five, "login", "k")
