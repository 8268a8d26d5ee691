"""Events posted by real `petitionbot worker --until-idle` processes (DESIGN §9) to a receiver
on loopback, on both databases: a worker killed with SIGKILL while the receiver holds a
request open loses no event. A new worker takes the dead one's rows back once its heartbeat
is stale and posts them again: every event arrives, the one in flight perhaps twice (the
receiver de-duplicates by id), and each supporter's events in the order they happened.
A worker told to stop (SIGTERM) while a receiver trickles its answer stops all the same,
and puts the row back.

Every wait is bounded; nothing is asserted about timings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from bot.infra.clock import utcnow
from bot.shell import events
from models import Worker as WorkerRow
from models.tables import event_deliveries, event_receivers
from tests.fakes.receiver import FakeReceiver, first_arrivals
from tests.fakes.trickle import Trickle

pytestmark = [pytest.mark.e2e]

SECRET = "whsec_e2e-secret-for-the-loopback-receiver"
WORKER_WAIT = 180   # seconds: generous for a loaded CI machine; never asserted as a duration
SUPPORTERS = (11, 12, 13, 14)
EACH = 5


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def reaper() -> Iterator[list[Worker]]:
    """Workers started by a test; any still running at the end are killed."""
    workers: list[Worker] = []
    yield workers
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=30)


def start_worker(database_url: str, config_path: Path, tmp_path: Path, name: str,
                 *args: str) -> Worker:
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith(
               ("TELEGRAM_", "TWILIO_", "REDIS_", "DATABASE_", "PETITIONBOT_"))}
    env.update(DATABASE_URL=database_url, PETITIONBOT_CONFIG=str(config_path),
               PUBLIC_BASE_URL="https://petition.example.org")
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "worker", "--until-idle", *args], cwd=tmp_path,
            stdout=out, stderr=subprocess.STDOUT, env=env)
    return Worker(process, log)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.01)
    return value


def statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(
            select(event_deliveries.c.status, func.count())
            .group_by(event_deliveries.c.status)).all()))


def test_a_worker_killed_mid_post_loses_no_event(
        database_url: str, engine: Engine, config_path: Path, tmp_path: Path,
        reaper: list[Worker]) -> None:
    with FakeReceiver(SECRET) as receiver:
        with engine.begin() as conn:
            conn.execute(insert(event_receivers).values(
                url=receiver.url, secret=SECRET, events=list(events.TYPES),
                created_by="admin@example.org", created_at=utcnow()))
            recorded = {s: [events.record(conn, events.SUBSCRIPTION_CHANGED,
                                          {"supporter": s, "n": n}, s, utcnow())
                            for n in range(EACH)] for s in SUPPORTERS}
        receiver.hold_from(6)   # five answered, then every answer held back

        first = start_worker(database_url, config_path, tmp_path, "first")
        reaper.append(first)

        def one_held() -> bool:
            if first.process.poll() is not None:
                pytest.fail(f"the worker exited early:\n{first.output()[-3000:]}")
            return receiver.waiting > 0

        wait_until(one_held, 60, "a post held open by the receiver")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
        at_kill = statuses(engine)
        assert at_kill["claimed"] >= 1, at_kill
        assert at_kill["delivered"] < len(SUPPORTERS) * EACH, at_kill
        assert "Traceback" not in first.output(), first.output()[-3000:]
        receiver.release()

        second = start_worker(database_url, config_path, tmp_path, "second",
                              "--stale-after", "3")
        reaper.append(second)
        try:
            second.process.wait(timeout=WORKER_WAIT)
        except subprocess.TimeoutExpired:
            second.process.kill()
            pytest.fail(f"worker still running after {WORKER_WAIT}s:\n"
                        f"{second.output()[-3000:]}")
        assert second.process.returncode == 0, second.output()[-3000:]
        assert "Traceback" not in second.output(), second.output()[-3000:]
        received = receiver.accepted()
        assert all(arrival.valid for arrival in receiver.arrivals)

    assert statuses(engine) == Counter(delivered=len(SUPPORTERS) * EACH)
    once = first_arrivals(received)
    assert sorted(e["id"] for e in once) == sorted(i for ids in recorded.values() for i in ids)
    for supporter, ids in recorded.items():
        assert [e["id"] for e in once if e["data"]["supporter"] == supporter] == ids
    assert len(received) > len(once), "the post held at the kill was posted again"
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(WorkerRow)) == 0


def test_a_worker_told_to_stop_while_a_receiver_trickles_its_answer_stops_and_puts_it_back(
        database_url: str, engine: Engine, config_path: Path, tmp_path: Path,
        reaper: list[Worker]) -> None:
    """SIGTERM while a post is under way to a receiver that answers a byte at a time (each
    within the read timeout, and not even its status line by the time the worker gives up
    on it): the worker gives the post a few seconds, cuts it, puts its row back for the
    next run, and exits cleanly."""
    with Trickle("status", every=2.0) as receiver:
        with engine.begin() as conn:
            conn.execute(insert(event_receivers).values(
                url=receiver.url, secret=SECRET, events=list(events.TYPES),
                created_by="admin@example.org", created_at=utcnow()))
            events.record(conn, events.SUBSCRIPTION_CHANGED, {"supporter": 11}, 11, utcnow())
        worker = start_worker(database_url, config_path, tmp_path, "trickled")
        reaper.append(worker)
        wait_until(receiver.posted.is_set, 60, "a post under way")
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=WORKER_WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running after {WORKER_WAIT}s:\n"
                        f"{worker.output()[-3000:]}")
    assert worker.process.returncode == 0, worker.output()[-3000:]
    assert "Traceback" not in worker.output(), worker.output()[-3000:]
    assert statuses(engine) == Counter(pending=1)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(WorkerRow)) == 0
