"""A receiver of petitionbot's events (DESIGN §9), as a CRM runs one: a real HTTP server on
loopback that checks each body's signature and answers as a test tells it to.

    with FakeReceiver(secret) as receiver:
        receiver.script("500", "hang", "drop")   # its next answers, in order; then `default`
        receiver.hold()                          # answers wait until release()
        receiver.hold_from(6)                    # so does the 6th request and every later one
        ...
        receiver.accepted()                      # the events answered with a 2xx, in order

An answer is a status ("500", "503", "302": a redirect to another path here), "hang" (no
answer for `hang` seconds, well past the client's read timeout, then the connection is
dropped) or "drop" (the connection is closed with no answer at all). Every request is kept
in `arrivals`, with whether its signature was valid.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.shell import events
from tests.fakes.loopback import Handler, LoopbackFake


@dataclass(frozen=True)
class Arrival:
    time: float
    path: str
    headers: dict[str, str]
    raw: bytes
    valid: bool          # the X-Petitionbot-Signature matched the body and the secret
    answer: str          # what it was answered ("200", "503", "hang", "drop")

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.raw)
        return parsed

    @property
    def accepted(self) -> bool:
        return self.answer.isdigit() and 200 <= int(self.answer) < 300


class _ReceiverHandler(Handler):
    def serve(self, method: str) -> None:
        fake: FakeReceiver = self.server.fake
        raw = self.body()
        if len(raw) < int(self.headers.get("Content-Length") or 0):
            self.close_connection = True  # the client went away mid-request: nothing came
            return
        answer = fake.arrive(self.path, dict(self.headers.items()), raw)
        with fake.held():
            if answer == "hang":
                fake.stopping.wait(fake.hang)
                self.close_connection = True
                return
            if answer == "drop":
                self.close_connection = True
                return
            status = int(answer)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()


class FakeReceiver(LoopbackFake):
    handler = _ReceiverHandler

    def __init__(self, secret: str, hang: float = 1.0, default: str = "200") -> None:
        self.secret = secret
        self.hang = hang
        self.default = default
        self.arrivals: list[Arrival] = []
        self.stopping = threading.Event()
        self._script: deque[str] = deque()
        self._cond = threading.Condition()
        self._gate = threading.Event()
        self._gate.set()
        self._in_flight = 0
        self._waiting = 0
        self._hold_from: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def opening(self) -> None:
        self.stopping.clear()

    def closing(self) -> None:
        self.stopping.set()
        self._gate.set()

    def script(self, *answers: str) -> None:
        with self._cond:
            self._script.extend(answers)

    def hold(self) -> None:
        self._gate.clear()

    def hold_from(self, arrival: int) -> None:
        """Hold the answer to the `arrival`-th request (counting from 1) and every later one."""
        with self._cond:
            self._hold_from = arrival

    def release(self) -> None:
        with self._cond:
            self._hold_from = None
        self._gate.set()

    @property
    def in_flight(self) -> int:
        """Requests arrived and not yet answered (held, or hanging)."""
        with self._cond:
            return self._in_flight

    def arrive(self, path: str, headers: dict[str, str], raw: bytes) -> str:
        signature = next((v for k, v in headers.items() if k.lower() == events.HEADER.lower()),
                         "")
        with self._cond:
            answer = self._script.popleft() if self._script else self.default
            self.arrivals.append(Arrival(time.monotonic(), path, headers, raw,
                                         events.verify(self.secret, raw, signature), answer))
            self._cond.notify_all()
            if self._hold_from is not None and len(self.arrivals) >= self._hold_from:
                self._gate.clear()
        return answer

    @property
    def waiting(self) -> int:
        """Requests whose answer is being held back now."""
        with self._cond:
            return self._waiting

    def held(self) -> _Held:
        return _Held(self)

    def accepted(self) -> list[dict[str, Any]]:
        """The events answered with a 2xx, in the order they arrived (duplicates kept)."""
        with self._cond:
            return [a.event for a in self.arrivals if a.accepted]

    def wait_for(self, condition: Callable[[FakeReceiver], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"receiver: not within {timeout}s")
                self._cond.wait(min(left, 0.05))


class _Held:
    """While a request waits for its answer: counted in flight, and kept back by hold()."""

    def __init__(self, fake: FakeReceiver) -> None:
        self.fake = fake

    def __enter__(self) -> None:
        with self.fake._cond:
            self.fake._in_flight += 1
            held = not self.fake._gate.is_set()
            self.fake._waiting += held
            self.fake._cond.notify_all()
        self.fake._gate.wait(timeout=60)
        with self.fake._cond:
            self.fake._waiting -= held
            self.fake._cond.notify_all()

    def __exit__(self, *_: object) -> None:
        with self.fake._cond:
            self.fake._in_flight -= 1
            self.fake._cond.notify_all()


def first_arrivals(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """De-duplicated by id, as a receiver must: each event where it first came."""
    seen: set[str] = set()
    kept = []
    for event in received:
        if event["id"] not in seen:
            seen.add(event["id"])
            kept.append(event)
    return kept
