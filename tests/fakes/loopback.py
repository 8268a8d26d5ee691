"""The fakes' HTTP plumbing: a keep-alive JSON server on 127.0.0.1, started and stopped.

A fake subclasses `LoopbackFake` (which gives it start, stop, `with`, port) and names a
`Handler` subclass whose `serve` answers one request. Stopping hangs up kept-alive
connections and waits for their threads, so nothing outlives the test.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs; clients pool connections
    server: LoopbackServer
    # Small replies on a kept-alive connection would otherwise wait on Nagle's algorithm
    # and the client's delayed ACK (about 40 ms each).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.serve("POST")

    def do_GET(self) -> None:
        self.serve("GET")

    def serve(self, method: str) -> None:
        raise NotImplementedError

    def body(self) -> bytes:
        """The request's body, sent with a Content-Length or chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class LoopbackServer(ThreadingHTTPServer):
    """A thread per connection, each connection tracked so that stop can hang it up."""

    daemon_threads = True

    def __init__(self, fake: Any, handler: type[Handler], port: int = 0) -> None:
        self.fake = fake
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(("127.0.0.1", port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(target=self._work, args=(request, client_address),
                                  name=f"{type(self.fake).__name__}-connection", daemon=True)
        with self._lock:
            self._connections.add(request)
            self._workers.add(worker)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.discard(request)
                self._workers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client hung up (a timeout, a cancelled long poll): nothing to report
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Hang up every open keep-alive connection and wait for its worker thread."""
        with self._lock:
            connections = list(self._connections)
            workers = list(self._workers)
        # A moment first for answers already being written (a waiting request just woken
        # by stop), so they are not cut off; idle keep-alive connections are hung up after.
        grace = time.monotonic() + 0.1
        for worker in workers:
            worker.join(max(0.0, grace - time.monotonic()))
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class LoopbackFake:
    """Start, stop and `with` for a fake served by `handler` on 127.0.0.1."""

    handler: type[Handler]
    requested_port = 0  # 0: any free port (a fixed one: the service coming back)
    _server: LoopbackServer | None = None
    _thread: threading.Thread | None = None

    def opening(self) -> None:
        """Called before the server starts."""

    def closing(self) -> None:
        """Called before the server stops: wake requests waiting on the fake."""

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self.opening()
        self._server = LoopbackServer(self, self.handler, self.requested_port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self.closing()
        server.shutdown()
        server.close_connections(timeout=5)
        server.server_close()
        if thread is not None:
            thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    def serve_until_stopped(self) -> None:
        """Run as a process of its own (bench/broadcast.py) until SIGTERM or Ctrl-C."""
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with self, contextlib.suppress(KeyboardInterrupt):
            signal.pause()
