"""Recommended production settings for the web app (webhooks, public JSON, health).

    gunicorn -c gunicorn.conf.py 'webhooks:create_app()'

Everything is chosen from the environment, so one file serves every deployment:

    PORT              port to listen on (default 5000)
    HOST              address to bind (default 127.0.0.1: put a TLS-terminating proxy in
                      front; set HOST=0.0.0.0 in a container whose port the platform maps)
    WEB_CONCURRENCY   worker processes (default: by database, see below)
    WEB_THREADS       threads per worker (default 4)
    DATABASE_URL      read here only for its scheme (sqlite or postgresql)
    LOG_FORMAT        text (default) or json: gunicorn's lines and the app's, alike
    PROMETHEUS_MULTIPROC_DIR  metrics shared by all workers (and the worker and poller)

Graceful restarts: SIGHUP (`systemctl reload petitionbot-web`) starts fresh workers that
load the new code and config, then lets the old ones finish their requests (up to
graceful_timeout) before they exit; SIGTERM stops the same way. The app is not preloaded
into the master, which is what lets a reload pick up new code.

bench/inbound.py starts gunicorn with exactly this file; change it here, not there.
"""

from __future__ import annotations

import os

from gunicorn.glogging import Logger

from bot.infra import logs
from bot.infra.settings import web_processes


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be a positive whole number, not {raw!r}")
    return value


_database_url = os.environ.get("DATABASE_URL", "").strip() or "sqlite:///petitionbot.db"
_sqlite = _database_url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"

bind = [f"{os.environ.get('HOST', '').strip() or '127.0.0.1'}:"
        f"{_positive_int('PORT', 5000)}"]

# Processes and threads, by database (WEB_CONCURRENCY and WEB_THREADS, when set, win;
# bot.infra.settings.web_processes decides the default, for `petitionbot serve` too):
# * PostgreSQL: the usual (2 x cores) + 1 processes of 4 threads. A request spends much of
#   its time waiting on database round trips, so a few threads per process keep the CPU
#   busy; the database serialises what must be (row locks per supporter, the counter row).
#   Connections: workers x threads stays far below PostgreSQL's max_connections (100).
# * SQLite: one process per core, of 4 threads. Every inbound message writes and SQLite
#   has one writer at a time: a process's inbound messages take turns (bot.shell.service), then
#   processes queue for the write lock on its lock file (models.db.WriterLock). The reply
#   budget and the console's login throttle live in the database, so they stay exact
#   across processes without Redis. A writer must not wait long for the CPU while it holds
#   the lock, and between two statements it waits for the GIL while another thread runs
#   Python: post_worker_init shortens that wait.
workers = _positive_int("WEB_CONCURRENCY", web_processes(_database_url, _cores()))
worker_class = "gthread"
threads = _positive_int("WEB_THREADS", 4)
SQLITE_SWITCH_INTERVAL = 0.0005  # seconds (Python's default is 0.005)

# A request that takes more than 30 s is stuck (Twilio itself gives up after 15 s).
timeout = 30
graceful_timeout = 20
# Twilio and the Telegram proxy reuse connections; keep idle ones a little while.
keepalive = 5

# Recycle workers now and then, so a slow leak cannot grow without bound; the jitter keeps
# workers from restarting together, so the others serve while one starts again. A lone
# worker (SQLite on one core) is not recycled: while it restarted, nothing would answer
# for about a second (bench/inbound.py saw it every 30 s at full load).
max_requests = 20000 if workers > 1 else 0
max_requests_jitter = 2000 if workers > 1 else 0

# No access log: request lines and query strings may carry phone numbers, and every
# inbound message is already logged (without personal data) by bot.shell.service.
accesslog = None


class NoAccessLog(Logger):  # type: ignore[misc]
    """gunicorn's logger, minus the access log: with a logging config (below) it would
    build every request's access line and then drop it."""

    def access(self, *args: object, **kwargs: object) -> None:
        return None


logger_class = NoAccessLog
errorlog = "-"
loglevel = "info"

# Worker heartbeats on tmpfs: a disk-backed /tmp can stall them under I/O load.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

proc_name = "petitionbot-web"
# Managed by signals (systemd's stop and reload), not gunicornc: no control socket, which
# would otherwise go in $HOME (read-only under systemd's ProtectHome) and be shared by every
# gunicorn of the same user.
control_socket_disable = True
preload_app = False  # each worker imports the app itself: a reload (HUP) loads new code

# Forwarded headers are believed in one place only: the app's TRUSTED_PROXIES (werkzeug's
# ProxyFix). Gunicorn would otherwise believe X-Forwarded-Proto (and SCRIPT_NAME) from any
# local process, or from anyone on a UNIX socket.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
forwarder_headers = ""

# Gunicorn's own lines in the app's format (LOG_FORMAT), through the same redaction.
logconfig_dict = logs.dict_config(loglevel.upper())


def on_starting(server: object) -> None:
    """Make the shared metrics folder before any worker writes to it (never empty it:
    the worker and the poller may be writing there already)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if folder:
        os.makedirs(folder, mode=0o750, exist_ok=True)


def child_exit(server: object, worker: object) -> None:
    """A worker has gone: its live gauges must not be added up any more."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined,no-untyped-call]


def post_worker_init(worker: object) -> None:
    """SQLite: a thread that wants the GIL asks the running one to let go after 0.5 ms
    instead of 5 ms, so the thread holding the database's write lock gets back to it
    sooner (see the process and thread counts above)."""
    if _sqlite:
        import sys

        sys.setswitchinterval(SQLITE_SWITCH_INTERVAL)
