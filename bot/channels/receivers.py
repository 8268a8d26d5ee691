"""Posting an event to a receiver over HTTP (DESIGN §9): one request, no redirect followed,
short timeouts, and what came of it in our words (an `Answer`). What a receiver writes back
is read only so that the connection can be reused, and then dropped: never kept or logged.

Timeouts bound each wait for the network, not a whole post: a receiver that trickles its
answer a byte at a time would keep a post open for ever. So each post also has a deadline
(DEADLINE seconds): past it, a watchdog shuts the post's socket. Cut before its status came,
a post is "no answer: timed out"; cut while its body trickles in, its status stands. `close`
cuts every post under way (a worker that stops does not wait on a receiver).

Proxies and CA bundles set in the environment apply as for every other request the worker
makes; credentials from the host's .netrc never do (the URL is whatever an admin typed).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError

from bot.shell.event_delivery import Answer

CONNECT_TIMEOUT = 5.0   # seconds to connect
READ_TIMEOUT = 10.0     # seconds for the answer (each read)
DEADLINE = 20.0         # seconds for a whole post, however its answer trickles in
USER_AGENT = "petitionbot-events/1"
READ_AT_MOST = 64 * 1024   # bytes of an answer read before the connection is dropped instead


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """An explicit "no credentials": requests would otherwise look in ~/.netrc."""
    return request


class ReceiverPoster:
    """Posts bodies to receivers; safe to share between threads (a session per thread,
    so kept-alive connections are reused)."""

    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, deadline: float = DEADLINE) -> None:
        self.timeout = (connect_timeout, read_timeout)
        self.deadline = deadline
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []
        self._watchdog = _Watchdog()

    def post(self, url: str, raw: bytes, headers: Mapping[str, str]) -> Answer:
        post = _Post(time.monotonic() + self.deadline)
        _current.post = post
        self._watchdog.watch(post)
        try:
            return self._post(url, raw, headers, post)
        finally:
            post.end()
            self._watchdog.forget(post)
            _current.post = None

    def _post(self, url: str, raw: bytes, headers: Mapping[str, str], post: _Post) -> Answer:
        try:
            response = self._session().post(
                url, data=raw, headers={**headers, "User-Agent": USER_AGENT},
                timeout=self.timeout, allow_redirects=False, stream=True, auth=_no_netrc)
        except requests.RequestException as error:
            return Answer(None, post.cut or why(error))
        except (OSError, ValueError) as error:  # e.g. a URL requests cannot even parse
            return Answer(None, post.cut or type(error).__name__)
        with response:
            try:
                read = 0
                for chunk in response.iter_content(8192):
                    read += len(chunk)
                    if read > READ_AT_MOST:
                        break
            except (requests.RequestException, OSError):
                pass  # the status is what counts; the connection is dropped on close
        return Answer(response.status_code)

    def close(self) -> None:
        """Cut every post under way, and close the kept-alive connections."""
        self._watchdog.cut_all("the worker stopped")
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            adapter = _WatchedAdapter()
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            with self._lock:
                self._sessions.append(session)
        return session


# The deadline --------------------------------------------------------------------------------

class _Post:
    """One post under way: when it must end, the connection it went out on, and why it was
    cut, if it was."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connection: Any = None   # a urllib3 connection, once it is open
        self.cut = ""
        self._ended = False
        self._lock = threading.Lock()

    def go_on(self, connection: Any) -> None:
        """The request goes out on `connection` (shut at once if the post was cut)."""
        with self._lock:
            self.connection = connection
            if self.cut:
                self._shut()

    def cut_now(self, why: str) -> None:
        with self._lock:
            if not self._ended:
                self.cut = self.cut or why
                self._shut()

    def end(self) -> None:
        """Over: its connection, back in the pool, is no longer this post's to shut."""
        with self._lock:
            self._ended = True
            self.connection = None

    def _shut(self) -> None:
        sock = getattr(self.connection, "sock", None)
        if sock is not None:
            # The plain socket's shutdown, under TLS too: it wakes a read blocked on it.
            with contextlib.suppress(OSError):  # (already closed)
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current = threading.local()   # .post: the post this thread is making


class _Watchdog:
    """Cuts posts past their deadline: one thread, started with the first post, asleep
    until the nearest deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._posts: set[_Post] = set()
        self._thread: threading.Thread | None = None

    def watch(self, post: _Post) -> None:
        with self._cond:
            self._posts.add(post)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="event-post-deadline",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def forget(self, post: _Post) -> None:
        with self._cond:
            self._posts.discard(post)

    def cut_all(self, why: str) -> None:
        with self._cond:
            posts, self._posts = list(self._posts), set()
        for post in posts:
            post.cut_now(why)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._posts:
                    self._thread = None   # the next post starts another
                    return
                now = time.monotonic()
                late = [post for post in self._posts if post.deadline <= now]
                self._posts.difference_update(late)
                if not late:
                    self._cond.wait(min(post.deadline for post in self._posts) - now)
            for post in late:
                post.cut_now("timed out")


class _Watched:
    """A urllib3 connection that tells the thread's post which connection it goes out on:
    a kept-alive one as the request starts, a new one once it is open."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._tell()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._tell()
        super().request(*args, **kwargs)  # type: ignore[misc]

    def _tell(self) -> None:
        post: _Post | None = getattr(_current, "post", None)
        if post is not None:
            post.go_on(self)


@functools.cache
def _watched_pool(pool: type[Any]) -> type[Any]:
    connection = type(f"Watched{pool.ConnectionCls.__name__}", (_Watched, pool.ConnectionCls),
                      {})
    return type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": connection})


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections the watchdog can cut (through a proxy too)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _watch_pools(manager)
        return manager


def _watch_pools(manager: Any) -> None:
    manager.pool_classes_by_scheme = {
        scheme: _watched_pool(pool) for scheme, pool in manager.pool_classes_by_scheme.items()}


def why(error: BaseException) -> str:
    """Why there was no answer, in a few words (never the URL: it may carry a token)."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "timed out connecting"
    if isinstance(error, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                          requests.exceptions.InvalidSchema)):
        return "not a URL it can post to"
    for cause in _causes(error):
        if isinstance(cause, http.client.RemoteDisconnected):  # (a ConnectionResetError)
            return "connection closed without an answer"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, (NameResolutionError, socket.gaierror)):
            return "host not found"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "connection failed"
    return type(error).__name__


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps (urllib3 keeps the cause in `reason` or in `args`)."""
    seen: set[int] = set()
    todo = [error]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__,
                             getattr(current, "reason", None), *current.args)
                 if isinstance(e, BaseException)]


__all__ = ["CONNECT_TIMEOUT", "DEADLINE", "READ_TIMEOUT", "USER_AGENT", "ReceiverPoster", "why"]
