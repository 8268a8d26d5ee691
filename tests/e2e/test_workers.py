"""Broadcast workers as real processes (DESIGN §8): `petitionbot worker --until-idle` against
the fake Telegram Bot API and the fake Twilio REST API on loopback, PostgreSQL and Redis.

(a) three workers share one announcement: every eligible recipient gets exactly one
    message, nobody opted out or unreachable gets any, and no channel's configured rate is
    exceeded in any one-second window (measured from the fake servers' arrival times);
(b) a worker killed with SIGKILL while a provider call is in flight: a new worker recovers
    its rows; nobody is lost, nobody gets the announcement twice, the in-doubt send is
    `unknown`.

Every wait is bounded; the rate-window property is the only timing assertion.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.config import Config, load_config
from bot.shell.service import Service
from models import Announcement, Delivery
from models.supporters import petition_id
from tests.conftest import CONFIG, ROOT, TWILIO_SID, TWILIO_TOKEN
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.twilio_api import FakeTwilio

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]

RATES = {"telegram": 25, "sms": 10, "whatsapp": 20}
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
SMS_FROM = "+447700900000"
WHATSAPP_FROM = "whatsapp:+447700900001"
WORKER_WAIT = 180   # seconds: generous for a loaded CI machine; never asserted as a duration
TEXT = "Thank you for signing! NHS England has agreed to meet us next week."


# The fake Twilio, slowed down and held on demand ----------------------------------------

class SlowTwilio(FakeTwilio):
    """The fake Twilio REST API, answering each request after `delay` seconds; `hold()` keeps
    answers back until `release()`, so a test can see a request that the provider has
    received but not yet answered (`in_flight`)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(TWILIO_SID, TWILIO_TOKEN)
        self.delay = delay
        self._in_flight = 0
        self._gate = threading.Event()
        self._gate.set()

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def stop(self) -> None:
        self.release()
        super().stop()

    def handle_request(self, method: str, path: str, content_type: str, authorization: str,
                       body: bytes) -> tuple[int, dict[str, Any]]:
        with self._cond:
            self._in_flight += 1
        try:
            answer = super().handle_request(method, path, content_type, authorization, body)
            if self.delay:
                time.sleep(self.delay)
            self._gate.wait(timeout=60)
            return answer
        finally:
            with self._cond:
                self._in_flight -= 1


# Fixtures -------------------------------------------------------------------------------

@pytest.fixture
def fake_twilio() -> Iterator[SlowTwilio]:
    with SlowTwilio() as fake:
        yield fake


@pytest.fixture
def redis_url() -> str:
    """Redis for the workers' shared pacing, without the pacing state of earlier runs."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        stale = list(client.scan_iter(match="petitionbot:pace:*"))
        if stale:
            client.delete(*stale)
    except redis.RedisError as error:
        if os.environ.get("PETITIONBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Redis is not answering at {REDIS_URL}: {error}")
        pytest.skip(f"needs Redis at {REDIS_URL} (TEST_REDIS_URL): {error}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def worker_config(tmp_path: Path) -> Path:
    """config.toml with quiet hours off and low rates, content unchanged."""
    source = CONFIG.read_text(encoding="utf-8")
    rates = ", ".join(f"{c} = {r}" for c, r in RATES.items())
    changed = re.sub(r"(?m)^quiet_hours\s*=.*$", 'quiet_hours = ""', source)
    changed = re.sub(r"(?m)^rates\s*=.*$", f"rates = {{ {rates} }}", changed)
    changed = re.sub(r'(?m)^issue_file\s*=\s*"(.*)"',
                     lambda m: f'issue_file = "{(ROOT / m[1]).as_posix()}"', changed)
    path = tmp_path / "config.toml"
    path.write_text(changed, encoding="utf-8")
    config = load_config(path)
    assert config.broadcast.quiet_hours is None
    assert dict(config.broadcast.rates) == RATES
    return path


# The audience ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    channel: str
    count: int
    state: str = "eligible"   # eligible | opted_out | unreachable | not_subscribed


def address_sql(channel: str) -> str:
    """The address of row g (g from generate_series), as the fakes will see it."""
    if channel == "telegram":
        return "(700000000 + :base + g)::text"
    return "'+4477009' || lpad((:base + g)::text, 5, '0')"


def seed(engine: Engine, groups: list[Group]) -> dict[str, list[str]]:
    """Supporters who signed, set-based; returns the eligible addresses per channel."""
    eligible: dict[str, list[str]] = {c: [] for c in RATES}
    base = 0
    with engine.begin() as connection:
        petition = petition_id(connection, "sirt")
        for group in groups:
            params = {"base": base, "n": group.count, "channel": group.channel,
                      "petition": petition}
            address = address_sql(group.channel)
            phone = "NULL" if group.channel == "telegram" else address
            connection.execute(text(
                f"INSERT INTO supporters (id, phone, created_at) "
                f"SELECT :base + g, {phone}, now() FROM generate_series(1, :n) g"), params)
            connection.execute(text(
                f"INSERT INTO identities (id, supporter_id, channel, address, opted_out_at, "
                f"unreachable_at, last_inbound_at, created_at) "
                f"SELECT :base + g, :base + g, :channel, {address}, "
                f"{'now()' if group.state == 'opted_out' else 'NULL'}, "
                f"{'now()' if group.state == 'unreachable' else 'NULL'}, "
                f"now() - interval '1 hour', now() FROM generate_series(1, :n) g"), params)
            connection.execute(text(
                "INSERT INTO signatures (petition_id, supporter_id, number, name, postcode, "
                "postcode_area, nation, channel, signed_at) "
                "SELECT :petition, :base + g, :base + g, 'Supporter ' || (:base + g), "
                "'G1 1AA', 'G', 'scotland', :channel, now() FROM generate_series(1, :n) g"),
                params)
            if group.state != "not_subscribed":
                connection.execute(text(
                    "INSERT INTO subscriptions (identity_id, petition_id, created_at) "
                    "SELECT :base + g, :petition, now() FROM generate_series(1, :n) g"), params)
            if group.state == "eligible":
                eligible[group.channel] += list(connection.scalars(text(
                    f"SELECT {address} FROM generate_series(1, :n) g"), params))
            base += group.count
        for table in ("supporters", "identities", "signatures", "subscriptions"):
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"))
    return eligible


def audience(groups: list[Group]) -> list[Group]:
    return groups + [Group(c, 6, state) for c in RATES
                     for state in ("opted_out", "unreachable", "not_subscribed")]


# Running the commands ------------------------------------------------------------------

def worker_env(database_url: str, config_path: Path, telegram: FakeTelegram,
               twilio: FakeTwilio, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith(("TELEGRAM_", "TWILIO_", "REDIS_",
                                                             "PUBLIC_BASE_URL", "DATABASE_"))}
    env.update(DATABASE_URL=database_url, PETITIONBOT_CONFIG=str(config_path),
               PUBLIC_BASE_URL="https://petition.example.org",
               TWILIO_ACCOUNT_SID=TWILIO_SID, TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
               TWILIO_SMS_FROM=SMS_FROM, TWILIO_WHATSAPP_FROM=WHATSAPP_FROM,
               TWILIO_API_BASE_URL=twilio.base_url, TELEGRAM_BOT_TOKEN=telegram.token,
               TELEGRAM_API_BASE_URL=telegram.base_url, **extra)
    return env


def petitionbot(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot", *args]


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(env: dict[str, str], tmp_path: Path, name: str, *args: str) -> Worker:
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(petitionbot("worker", "--until-idle", *args), cwd=tmp_path,
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    return Worker(process, log)


def wait_exit(workers: list[Worker], timeout: float = WORKER_WAIT) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        try:
            worker.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            for w in workers:
                w.process.kill()
            pytest.fail(f"worker still running after {timeout}s:\n{worker.output()[-3000:]}")
        assert worker.process.returncode == 0, worker.output()[-3000:]
        assert "Traceback" not in worker.output(), worker.output()[-3000:]


@pytest.fixture
def reaper() -> Iterator[list[Worker]]:
    """Workers started by a test; any still running at the end are killed."""
    workers: list[Worker] = []
    yield workers
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=30)


def announce(env: dict[str, str], tmp_path: Path) -> int:
    done = subprocess.run(petitionbot("announce", "--petition", "sirt", "--text", TEXT, "--send"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"Announcement (\d+) queued for ([\d,]+) recipient", done.stdout)
    assert match, done.stdout + done.stderr
    return int(match[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.01)


# What the fakes saw ----------------------------------------------------------------------

def arrivals(telegram: FakeTelegram, twilio: FakeTwilio) -> dict[str, list[tuple[float, str]]]:
    """(arrival time, recipient address) of every send request, per channel."""
    seen: dict[str, list[tuple[float, str]]] = {c: [] for c in RATES}
    for call in telegram.calls_to("sendMessage"):
        seen["telegram"].append((call["time"], str(call["params"].get("chat_id"))))
    for call in twilio.requests:
        to = call["to"] or ""
        if to.startswith("whatsapp:"):
            seen["whatsapp"].append((call["time"], to.removeprefix("whatsapp:")))
        else:
            seen["sms"].append((call["time"], to))
    return seen


# The pacer admits at most `rate` sends in any second, measured where it decides (Redis's
# clock); tests/unit/test_pacing.py and the test above hold it to that. Here requests are stamped
# where they land, in the fake provider in this process, and on a loaded two-core machine a
# request can take tens of milliseconds between admission and that stamp (the worker or the
# fake's thread waiting for a core). Admissions 1.04 s apart per `rate` were once stamped as
# 11 in 0.998 s at 10/s, and under a full CI run on PostgreSQL as 11 in 0.897 s (the first
# request landing 6 ms before the second). So arrivals are counted in a window shorter by
# that transit: a real burst (rate + 1 sends within a fraction of the spacing) still shows,
# jitter does not.
TRANSIT = 0.2


def busiest_second(times: list[float]) -> tuple[int, list[float]]:
    """The most requests that arrived in any window [t, t + 1 s - TRANSIT), and their
    arrival times (relative to the first request) for the failure message."""
    ordered = sorted(times)
    peak, start = 0, 0
    for i, t in enumerate(ordered):
        n = bisect.bisect_left(ordered, t + 1.0 - TRANSIT) - i
        if n > peak:
            peak, start = n, i
    window = [round(t - ordered[0], 3) for t in ordered[start:start + peak]]
    return peak, window


def statuses(sessions: sessionmaker[Session], announcement_id: int) -> Counter[str]:
    with sessions() as session:
        return Counter(dict(session.execute(
            select(Delivery.status, func.count()).where(
                Delivery.announcement_id == announcement_id)
            .group_by(Delivery.status)).all()))


def delivery_addresses(sessions: sessionmaker[Session], announcement_id: int,
                       status: str) -> dict[str, set[str]]:
    with sessions() as session:
        rows = session.execute(text(
            "SELECT d.channel, i.address FROM deliveries d JOIN identities i "
            "ON i.id = d.identity_id WHERE d.announcement_id = :a AND d.status = :s"),
            {"a": announcement_id, "s": status}).all()
    found: dict[str, set[str]] = {c: set() for c in RATES}
    for channel, address in rows:
        found[channel].add(address)
    return found


def test_workers_sharing_redis_admit_at_most_rate_sends_a_second_between_them(
        redis_url: str) -> None:
    from bot.infra.pacing import MARGIN, RedisPacer

    pacers = [RedisPacer({"sms": 10}, redis_url) for _ in range(3)]
    admitted = [p.admit("sms") for p in itertools.islice(itertools.cycle(pacers), 10)]
    assert admitted == [0.0] * 10
    waits = [p.admit("sms") for p in pacers]  # an eleventh, from any of them, waits
    assert all(1 - 0.5 < wait <= 1 + MARGIN for wait in waits), waits




# (a) three workers, one announcement, shared pacing ---------------------------------------------

def test_three_workers_send_each_recipient_one_message_within_each_channels_rate(
        database_url: str, engine: Engine, sessions: sessionmaker[Session], config: Config,
        fake_telegram: FakeTelegram, fake_twilio: SlowTwilio, redis_url: str,
        worker_config: Path, tmp_path: Path, reaper: list[Worker]) -> None:
    Service(config, sessions).sync_petitions()
    eligible = seed(engine, audience([Group("telegram", 150), Group("sms", 70),
                                      Group("whatsapp", 110)]))
    env = worker_env(database_url, worker_config, fake_telegram, fake_twilio,
                     REDIS_URL=redis_url)
    announcement_id = announce(env, tmp_path)
    assert statuses(sessions, announcement_id) == Counter(
        pending=sum(len(a) for a in eligible.values()))

    for n in range(3):
        reaper.append(start_worker(env, tmp_path, f"worker-{n}", "--batch", "20"))
    wait_exit(reaper)

    seen = arrivals(fake_telegram, fake_twilio)
    for channel, addresses in eligible.items():
        received = Counter(address for _, address in seen[channel])
        twice = {a: n for a, n in received.items() if n > 1}
        assert not twice, f"{channel}: sent more than once to {twice}"
        assert set(received) == set(addresses), (
            f"{channel}: missing {sorted(set(addresses) - set(received))[:5]}, "
            f"unexpected {sorted(set(received) - set(addresses))[:5]}")
        peak, window = busiest_second([t for t, _ in seen[channel]])
        assert peak <= RATES[channel], (
            f"{channel}: {peak} requests in one second, configured {RATES[channel]}/s: "
            f"arrivals {window}")

    for message in fake_telegram.sent:
        assert "PLANETS" in message["text"] and "STOP" in message["text"]
    for call in fake_twilio.requests:
        assert call["status"] == 201, call
        assert "PLANETS" in call["body"] and "STOP" in call["body"]
        assert call["from"] == (WHATSAPP_FROM if call["to"].startswith("whatsapp:")
                                else SMS_FROM)
    total = sum(len(a) for a in eligible.values())
    assert statuses(sessions, announcement_id) == Counter(sent=total)
    assert delivery_addresses(sessions, announcement_id, "sent") == {
        c: set(a) for c, a in eligible.items()}
    with sessions() as session:
        assert session.get(Announcement, announcement_id).status == "sent"
        providers = session.scalars(select(Delivery.provider_id).where(
            Delivery.announcement_id == announcement_id)).all()
        assert all(providers) and len(set(providers)) == total
        assert session.scalar(text("SELECT count(*) FROM workers")) == 0


# (b) a worker killed mid-send; another recovers ---------------------------------------------------

def test_a_worker_killed_mid_send_loses_nobody_and_sends_nobody_twice(
        database_url: str, engine: Engine, sessions: sessionmaker[Session], config: Config,
        fake_telegram: FakeTelegram, redis_url: str, worker_config: Path, tmp_path: Path,
        reaper: list[Worker]) -> None:
    Service(config, sessions).sync_petitions()
    eligible = seed(engine, audience([Group("telegram", 120), Group("sms", 40),
                                      Group("whatsapp", 40)]))
    total = sum(len(a) for a in eligible.values())
    with SlowTwilio(delay=0.3) as twilio:
        env = worker_env(database_url, worker_config, fake_telegram, twilio,
                         REDIS_URL=redis_url)
        announcement_id = announce(env, tmp_path)
        first = start_worker(env, tmp_path, "first")
        reaper.append(first)

        def some_sent() -> bool:
            if first.process.poll() is not None:
                pytest.fail(f"the worker exited early:\n{first.output()[-3000:]}")
            counts = statuses(sessions, announcement_id)
            return counts["sent"] >= 10 and counts["pending"] + counts["claimed"] > 0

        wait_until(some_sent, 60, "a few deliveries sent")
        # Hold the fake Twilio's answers: the worker is now certainly inside a provider call
        # (the request has arrived, no answer yet) when it dies.
        twilio.hold()
        wait_until(lambda: twilio.in_flight > 0, 30, "a Twilio request in flight")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
        at_kill = statuses(sessions, announcement_id)
        twilio.release()
        assert at_kill["sending"] >= 1, at_kill
        assert at_kill["pending"] + at_kill["claimed"] > 0, at_kill

        second = start_worker(env, tmp_path, "second", "--stale-after", "3")
        reaper.append(second)
        wait_exit([second])
        seen = arrivals(fake_telegram, twilio)

    counts = statuses(sessions, announcement_id)
    assert set(counts) <= {"sent", "unknown"}, counts
    assert counts["sent"] + counts["unknown"] == total, counts
    assert 1 <= counts["unknown"] <= len(RATES), counts
    sent = delivery_addresses(sessions, announcement_id, "sent")
    unknown = delivery_addresses(sessions, announcement_id, "unknown")
    for channel, addresses in eligible.items():
        received = Counter(address for _, address in seen[channel])
        twice = {a: n for a, n in received.items() if n > 1}
        assert not twice, f"{channel}: sent more than once to {twice}"
        assert set(received) <= set(addresses), channel
        # Every `sent` row went out once; an `unknown` one at most once (it may have).
        assert sent[channel] <= set(received), channel
        assert sent[channel] | unknown[channel] == set(addresses), channel
    # The request in flight at the kill reached the provider: its row is in doubt, not sent.
    assert unknown["sms"] | unknown["whatsapp"], counts
    with sessions() as session:
        assert session.get(Announcement, announcement_id).status == "sent"
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.status == "unknown", Delivery.error_code != "worker_lost")) == 0
