"""A receiver that trickles its answer (DESIGN §9): a plain socket server on loopback that
answers one byte every `every` seconds (within the client's read timeout) for as long as
anyone listens.

    with Trickle("body") as receiver:     # a 200 and its headers at once, then the body
    with Trickle("status", every=2.0) as receiver:   # the status line itself, byte by byte
        receiver.url
        receiver.posted.wait(60)           # a request has come and is being answered

Only a deadline for the whole post ends such an answer (bot/channels/receivers.py).
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000


class Trickle:
    def __init__(self, trickled: str, every: float = 0.1) -> None:
        assert trickled in ("body", "status")
        self.trickled = trickled
        self.every = every
        self.posted = threading.Event()
        self.stopping = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}/events"

    def __enter__(self) -> Trickle:
        accepting = threading.Thread(target=self._accept, name="trickle", daemon=True)
        self.threads.append(accepting)
        accepting.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stopping.set()
        self.server.close()
        for thread in self.threads:
            thread.join(10)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                return   # closed
            answering = threading.Thread(target=self._answer, args=(connection,),
                                         name="trickle-connection", daemon=True)
            self.threads.append(answering)
            answering.start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                if not (got := connection.recv(65536)):
                    return
                request += got
            self.posted.set()
            answer = ANSWER
            if self.trickled == "body":
                head = answer.index(b"\r\n\r\n") + 4
                connection.sendall(answer[:head])
                answer = answer[head:]
            for byte in answer:
                if self.stopping.wait(self.every):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return   # the client cut the post
