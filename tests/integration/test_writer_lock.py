"""models.db.WriterLock: one SQLite writer at a time across threads and processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from models.db import WriterLock

pytest.importorskip("fcntl")

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def test_threads_take_turns(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "petitionbot.db"))
    assert lock.acquire()
    waiting = threading.Event()
    got: list[bool] = []

    def second() -> None:
        waiting.set()
        got.append(lock.acquire(timeout=10))
        lock.release()

    thread = threading.Thread(target=second)
    thread.start()
    waiting.wait(5)
    assert not got  # still waiting: the first writer has not let go
    lock.release()
    thread.join(10)
    assert got == [True]


def test_another_process_holding_it_makes_writers_wait_then_give_up(tmp_path: Path) -> None:
    database = tmp_path / "petitionbot.db"
    lock = WriterLock(str(database))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, f"{database}-writer"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert not lock.acquire(timeout=0.2)  # gave up: the caller answers 503
        assert lock.local.acquire(timeout=0)  # and left nothing held in this process
        lock.local.release()
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(10) == 0  # the kernel drops a finished process's lock
        assert lock.acquire(timeout=10)
        lock.release()
    finally:
        holder.kill()
        holder.wait()
