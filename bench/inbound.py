"""Inbound SMS benchmark (issue #2): simulated supporters sign over real HTTP.

    .venv/bin/python bench/inbound.py            # about 8 minutes
    .venv/bin/python bench/inbound.py --quick    # about 3 minutes

For each database (SQLite, then PostgreSQL) it
1. migrates a fresh database (SQLite: a file in a temporary folder; PostgreSQL: the `bench`
   database's public schema dropped and recreated),
2. starts the production server exactly as recommended, `gunicorn -c gunicorn.conf.py
   'webhooks:create_app()'`, on a free loopback port, and beside it two baselines under the
   same gunicorn.conf.py and the same worker settings (same DATABASE_URL): bench/bare_app.py
   (fixed TwiML, no database: the server alone) and bench/floor_app.py (a minimal
   implementation of the signing path: the signature, the number, one transaction of raw
   statements, TwiML, a log line), and waits for all three to answer /healthz,
3. runs a load generator in a separate process (aiohttp, keep-alive): simulated supporters,
   each sending the 7 messages of an SMS signing in order ("Hi", "SIGN", "YES", name,
   postcode, "YES", "NO") and waiting for each reply, every request signed like Twilio's
   (X-Twilio-Signature), all forms and signatures computed before the clock starts:
   (a) saturation: a fixed number of concurrent supporters (closed loop), after a warm-up;
   (b) half load: an open loop paced at 50% of the product's saturation rate,
   against the product, then the same (identical requests, half load at the product's
   rate) against the bare endpoint, then saturation only against the floor,
4. then --rounds - 1 more saturation rounds (default 3 in all), product, bare and floor in
   turns: this machine's speed drifts by tens of percent from minute to minute, so each
   round compares runs a few seconds apart (product and bare back to back), and the goal
   is judged on the median of the rounds' ratios; floor/bare is about as far as any
   implementation could get here, product/floor what the product's features cost,
5. checks correctness: every supporter who sent all 7 messages signed exactly once, the
   counters agree, one inbound row per message, no 5xx; and that every floor request got a
   200 and the floor's signing reply says so (either failing makes the exit status 1),
and prints one table. Goals (issue #2): product saturation throughput at least 0.50 of the
bare endpoint's on SQLite and 0.30 on PostgreSQL; p99 under 100 ms at half load.

Only loopback addresses are used. Every loop is bounded by count and by time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from databases import fresh_database

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_APP = "webhooks:create_app()"
BARE_APP = "bench.bare_app:create_app()"
FLOOR_APP = "bench.floor_app:create_app()"
PUBLIC_BASE_URL = "https://petition.example.org"  # only signed over, never contacted
WEBHOOK_PATH = "/twilio/messages"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
BOT_NUMBER = "+447700900000"
PG_URL = "postgresql+psycopg://127.0.0.1:5432/bench"
SIGNED_MARK = b"you have signed!"   # in the reply to the review's YES (the "signed" text)
POSTCODES = ("SW1A 1AA", "EH1 1YZ", "CF10 1EP", "BT1 5GS", "M1 1AE", "LS1 4DY", "G2 1DY")
HALF_LOAD_P99_GOAL_MS = 100.0
RATIO_GOALS = {"sqlite": 0.50, "postgresql": 0.30}
PRODUCT_RATE_CEILING = 2500.0  # msgs/s the product's unique-supporter pool is sized for
MAX_IN_FLIGHT = 256            # open loop: a server that falls behind cannot grow this further


@dataclass(frozen=True)
class Plan:
    warmup: float       # s of saturation before measuring
    measure: float      # s of measured saturation
    half: float         # s of paced half load
    concurrency: int    # concurrent supporters at saturation
    drain: float = 20.0  # s allowed to finish supporters in progress after a phase
    boot_timeout: float = 60.0


FULL = Plan(warmup=5, measure=15, half=15, concurrency=32)
QUICK = Plan(warmup=2, measure=5, half=5, concurrency=32)


# Requests ---------------------------------------------------------------------------------

def supporter_phone(index: int) -> str:
    if not 0 <= index < 100_000:
        raise ValueError("the +4477009xxxxx range holds 100,000 supporters")
    return f"+4477009{index:05d}"


def _letters(n: int) -> str:
    out = ""
    n += 26 * 26  # at least three letters
    while n:
        n, r = divmod(n, 26)
        out = chr(ord("a") + r) + out
    return out.capitalize()


def supporter_bodies(index: int) -> tuple[str, ...]:
    name = f"Bench Supporter {_letters(index)}"
    return ("Hi", "SIGN", "YES", name, POSTCODES[index % len(POSTCODES)], "YES", "NO")


def build_requests(run_tag: int, first: int, count: int) -> list[tuple[bytes, ...]]:
    """Bodies and signatures for supporters first..first+count-1: one tuple of 7 requests
    each, a request being (urlencoded body, signature) packed as bytes pairs."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(AUTH_TOKEN)
    url = PUBLIC_BASE_URL + WEBHOOK_PATH
    out = []
    for index in range(first, first + count):
        phone = supporter_phone(index)
        reqs: list[bytes] = []
        for step, text in enumerate(supporter_bodies(index)):
            sid = f"SM{run_tag:08x}{index:016x}{step:08x}"
            form = [("ToCountry", "GB"), ("ToState", ""), ("SmsMessageSid", sid),
                    ("NumMedia", "0"), ("ToCity", ""), ("FromZip", ""), ("SmsSid", sid),
                    ("FromState", ""), ("SmsStatus", "received"), ("FromCity", ""),
                    ("Body", text), ("FromCountry", "GB"), ("To", BOT_NUMBER), ("ToZip", ""),
                    ("NumSegments", "1"), ("ReferralNumMedia", "0"), ("MessageSid", sid),
                    ("AccountSid", ACCOUNT_SID), ("From", phone), ("ApiVersion", "2010-04-01")]
            signature = validator.compute_signature(url, dict(form))
            reqs.append(urllib.parse.urlencode(form).encode())
            reqs.append(signature.encode())
        out.append(tuple(reqs))
    return out


# CPU accounting from /proc ------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_snapshot(server_pid: int) -> dict[str, Any]:
    """CPU seconds so far, per process: gunicorn's master and workers, PostgreSQL's."""
    server: dict[int, float] = {}
    postgres: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None:
            continue
        comm, ppid, cpu = stat
        if pid == server_pid or ppid == server_pid:
            server[pid] = cpu
        elif comm == "postgres":
            postgres[pid] = cpu
    with open("/proc/stat") as handle:
        parts = [int(x) for x in handle.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return {"t": time.perf_counter(), "server": server, "postgres": postgres,
            "machine_busy": (sum(parts) - idle) / CLK_TCK, "self": sum(os.times()[:2])}


class CpuTracker:
    """Cores used over a window, sampled every few hundred ms so that a worker which exits
    (max_requests) or starts during the window is still counted."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.first: dict[str, Any] | None = None
        self.start: dict[str, dict[int, float]] = {"server": {}, "postgres": {}}
        self.last: dict[str, dict[int, float]] = {"server": {}, "postgres": {}}
        self.latest: dict[str, Any] | None = None

    def sample(self) -> None:
        snap = cpu_snapshot(self.server_pid)
        if self.first is None:
            self.first = snap
            for kind in ("server", "postgres"):
                self.start[kind] = dict(snap[kind])
        for kind in ("server", "postgres"):
            self.last[kind].update(snap[kind])
        self.latest = snap

    def used(self, kind: str) -> dict[int, float]:
        return {pid: cpu - self.start[kind].get(pid, 0.0)
                for pid, cpu in self.last[kind].items()}

    def result(self) -> dict[str, Any]:
        if self.first is None or self.latest is None or self.latest is self.first:
            return {}
        a, b = self.first, self.latest
        wall = b["t"] - a["t"]
        server = self.used("server")
        workers = sorted(round(v / wall, 2) for pid, v in server.items()
                         if pid != self.server_pid and v > 0)
        return {"server": sum(server.values()) / wall, "per_worker": workers,
                "postgres": sum(self.used("postgres").values()) / wall,
                "generator": (b["self"] - a["self"]) / wall,
                "machine": (b["machine_busy"] - a["machine_busy"]) / wall}


async def track_cpu(tracker: CpuTracker, start: float, end: float, every: float = 0.25) -> None:
    """Sample from `start` to `end` (perf_counter times)."""
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    while True:
        tracker.sample()
        remaining = end - time.perf_counter()
        if remaining <= 0:
            return
        await asyncio.sleep(min(every, remaining))


# The load generator (its own process) -------------------------------------------------------

@dataclass
class PhaseResult:
    name: str
    messages: int = 0            # responses completed inside the measurement window
    window: float = 0.0
    rate: float = 0.0            # messages/s inside the window
    target_rate: float = 0.0     # open loop only
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)   # every response, whole phase
    connection_errors: int = 0
    retries: int = 0
    content_mismatches: int = 0  # the review's YES not answered with "you have signed!"
    supporters_started: int = 0
    supporters_completed: int = 0  # sent all 7 messages
    supporters_abandoned: int = 0  # cut off by the drain time limit
    pool_exhausted: bool = False
    late_ticks: int = 0          # open loop: sends more than 10 ms behind schedule
    cpu: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[min(rank, len(sorted_values) - 1)]


class Pool:
    """Supporters' precomputed requests, handed out once each (or cycled, for the bare app)."""

    def __init__(self, supporters: list[tuple[bytes, ...]], cycle: bool) -> None:
        self.supporters = supporters
        self.cycle = cycle
        self.next = 0
        self.exhausted = False

    def take(self) -> tuple[bytes, ...] | None:
        if self.next >= len(self.supporters):
            if not self.cycle or not self.supporters:
                self.exhausted = True
                return None
            self.next = 0
        item = self.supporters[self.next]
        self.next += 1
        return item


class Generator:
    def __init__(self, url: str, server_pid: int) -> None:
        self.url = url
        self.server_pid = server_pid

    async def send(self, session: Any, body: bytes, signature: bytes,
                   result: PhaseResult) -> tuple[int, bytes]:
        import aiohttp

        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": signature.decode(),
                   "User-Agent": "TwilioProxy/1.1"}
        for attempt in range(3):
            try:
                async with session.post(self.url, data=body, headers=headers) as response:
                    payload = await response.read()
                    key = f"{response.status // 100}xx" if response.status != 200 else "200"
                    result.statuses[key] = result.statuses.get(key, 0) + 1
                    return response.status, payload
            except (TimeoutError, aiohttp.ClientConnectionError):
                # A closed keep-alive connection (a worker restarting) or a timeout. Twilio
                # would try again; a replay is harmless (MessageSid makes it a no-op).
                result.connection_errors += 1
                if attempt < 2:
                    result.retries += 1
                    await asyncio.sleep(0.01)
        return 0, b""

    def _check(self, step: int, status: int, payload: bytes, result: PhaseResult) -> None:
        if step == 5 and status == 200 and SIGNED_MARK not in payload:
            result.content_mismatches += 1

    async def saturation(self, session: Any, pool: Pool, plan: Plan) -> PhaseResult:
        result = PhaseResult("saturation", window=plan.measure)
        samples: list[tuple[float, float]] = []   # (completed at, latency)
        start = time.perf_counter()
        window_start = start + plan.warmup
        window_end = window_start + plan.measure
        hard_end = window_end + plan.drain
        tracker = CpuTracker(self.server_pid)

        async def lane() -> None:
            while time.perf_counter() < window_end:
                requests = pool.take()
                if requests is None:
                    return
                result.supporters_started += 1
                for step in range(7):
                    if time.perf_counter() > hard_end:
                        result.supporters_abandoned += 1
                        return
                    t0 = time.perf_counter()
                    status, payload = await self.send(session, requests[2 * step],
                                                      requests[2 * step + 1], result)
                    t1 = time.perf_counter()
                    samples.append((t1, t1 - t0))
                    self._check(step, status, payload, result)
                result.supporters_completed += 1

        sampling = asyncio.ensure_future(track_cpu(tracker, window_start, window_end))
        await asyncio.gather(*(lane() for _ in range(plan.concurrency)))
        if not sampling.done():  # the pool ran out before the window closed
            sampling.cancel()
        result.pool_exhausted = pool.exhausted
        result.cpu = tracker.result()
        inside = sorted(lat for t, lat in samples if window_start <= t < window_end)
        result.messages = len(inside)
        result.rate = len(inside) / plan.measure
        self._latencies(result, inside)
        return result

    async def paced(self, session: Any, pool: Pool, rate: float, duration: float,
                    drain: float) -> PhaseResult:
        """Open loop: one message every 1/rate s, to a supporter whose last reply is in
        (a new supporter when none is waiting). Latency counts from the scheduled time."""
        result = PhaseResult("half", window=duration, target_rate=rate)
        latencies: list[float] = []
        ready: deque[list[Any]] = deque()   # [requests, next step]
        in_flight: set[asyncio.Future[None]] = set()
        ticks = int(rate * duration)
        interval = 1.0 / rate

        async def one(supporter: list[Any], scheduled: float) -> None:
            requests, step = supporter
            status, payload = await self.send(session, requests[2 * step],
                                              requests[2 * step + 1], result)
            latencies.append(time.perf_counter() - scheduled)
            self._check(step, status, payload, result)
            supporter[1] += 1
            if supporter[1] < 7:
                ready.append(supporter)
            else:
                result.supporters_completed += 1

        start = time.perf_counter() + 0.05
        tracker = CpuTracker(self.server_pid)
        sampling = asyncio.ensure_future(track_cpu(tracker, start, start + duration))
        for tick in range(ticks):
            scheduled = start + tick * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.010:
                result.late_ticks += 1
            if len(in_flight) >= MAX_IN_FLIGHT:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                in_flight.difference_update(done)
            if ready:
                supporter = ready.popleft()
            else:
                requests = pool.take()
                if requests is None:
                    break
                result.supporters_started += 1
                supporter = [requests, 0]
            task = asyncio.ensure_future(one(supporter, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            _, late = await asyncio.wait(list(in_flight), timeout=drain)
            for straggler in late:
                straggler.cancel()
            result.supporters_abandoned += len(late)
        if not sampling.done():
            sampling.cancel()
        result.cpu = tracker.result()
        result.pool_exhausted = pool.exhausted
        measured = sorted(latencies)
        result.messages = len(measured)
        result.window = duration
        result.rate = len(measured) / duration
        self._latencies(result, measured)

        # Finish the supporters in progress (unpaced, not measured) so each can be checked.
        async def finish(supporter: list[Any]) -> None:
            requests, step = supporter
            for s in range(step, 7):
                status, payload = await self.send(session, requests[2 * s],
                                                  requests[2 * s + 1], result)
                self._check(s, status, payload, result)
            result.supporters_completed += 1

        waiting = list(ready)
        ready.clear()
        if waiting:
            finishing = [asyncio.ensure_future(finish(s)) for s in waiting]
            _, unfinished = await asyncio.wait(finishing, timeout=drain)
            for straggler in unfinished:
                straggler.cancel()
            result.supporters_abandoned += len(unfinished)
        return result

    @staticmethod
    def _latencies(result: PhaseResult, ordered: list[float]) -> None:
        if ordered:
            result.p50_ms = percentile(ordered, 0.50) * 1000
            result.p99_ms = percentile(ordered, 0.99) * 1000
            result.max_ms = ordered[-1] * 1000


async def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    plan = Plan(**spec["plan"])
    gen = Generator(spec["url"], spec["server_pid"])
    unique = spec["unique"]
    first = spec["first_supporter"]
    run_tag = spec["run_tag"]
    prep_started = time.perf_counter()
    if unique:
        count = math.ceil(PRODUCT_RATE_CEILING * (plan.warmup + plan.measure) / 7)
        count = min(count, 100_000 - first - 10_000)
    else:  # the bare app: the product's own requests, from the start, cycled
        count = min(2000, math.ceil(PRODUCT_RATE_CEILING * (plan.warmup + plan.measure) / 7))
    saturation_pool = Pool(build_requests(run_tag, first, count), cycle=not unique)
    prep = time.perf_counter() - prep_started

    timeout = aiohttp.ClientTimeout(total=30)
    # keepalive_timeout below the server's (5 s): the client, not the server, closes idle
    # connections, so no request is sent on a connection the server is closing.
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, keepalive_timeout=3)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sat = await gen.saturation(session, saturation_pool, plan)
        rate = spec["half_rate"] or sat.rate / 2
        used = saturation_pool.next if unique else 0
        if rate > 0 and plan.half > 0:
            need = math.ceil(rate * plan.half / 7) + 64
            if unique:
                half_supporters = build_requests(run_tag, first + used,
                                                 min(need, 100_000 - first - used))
            else:
                half_supporters = saturation_pool.supporters
            half = await gen.paced(session, Pool(half_supporters, cycle=not unique), rate,
                                   plan.half, plan.drain)
        else:
            half = PhaseResult("half")
            half_supporters = []
    return {"saturation": asdict(sat), "half": asdict(half), "prep_s": prep,
            "supporters_used": used + (half.supporters_started if unique else 0)}


def loadgen_main(conn: Any, spec: dict[str, Any]) -> None:
    """Entry point of the generator process: run the phases, send the results back."""
    try:
        conn.send({"ok": True, **asyncio.run(_generate(spec))})
    except BaseException as error:  # report anything, including KeyboardInterrupt
        import traceback

        conn.send({"ok": False, "error": f"{type(error).__name__}: {error}",
                   "traceback": traceback.format_exc()})
    finally:
        conn.close()


def run_generator(spec: dict[str, Any], limit: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=loadgen_main, args=(child, spec), name="bench-loadgen")
    process.start()
    child.close()
    try:
        if not parent.poll(limit):
            raise RuntimeError(f"load generator still running after {limit:.0f} s")
        result: dict[str, Any] = parent.recv()
    finally:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    if not result.get("ok"):
        raise RuntimeError(f"load generator failed: {result.get('error')}\n"
                           f"{result.get('traceback', '')}")
    return result


# Servers and databases -----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gunicorn_bin() -> str:
    local = Path(sys.executable).parent / "gunicorn"
    found = str(local) if local.exists() else shutil.which("gunicorn")
    if not found:
        raise SystemExit("gunicorn is not installed in this environment")
    return found


def server_env(database_url: str, port: int, runtime_dir: str,
               redis_url: str) -> dict[str, str]:
    drop = ("TWILIO_", "TELEGRAM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k not in (
        "DATABASE_URL", "PUBLIC_BASE_URL", "PETITIONBOT_CONFIG", "SECRET_KEY", "REDIS_URL",
        "PORT", "HOST")}
    env.update({
        "DATABASE_URL": database_url,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "PETITIONBOT_CONFIG": "config.toml",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SECRET_KEY": "bench-secret-key",   # else create_app writes instance/secret_key
        "PORT": str(port),
        "HOST": "127.0.0.1",
        # gunicorn's control socket goes under XDG_RUNTIME_DIR: keep ours private, so it
        # cannot replace the socket of another gunicorn running on this machine.
        "XDG_RUNTIME_DIR": runtime_dir,
        "PYTHONUNBUFFERED": "1",
    })
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def effective_settings(app: str, env: dict[str, str]) -> dict[str, str]:
    """What gunicorn.conf.py chose, as gunicorn itself reports it."""
    out = subprocess.run([gunicorn_bin(), "-c", "gunicorn.conf.py", "--print-config", app],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                         check=True).stdout
    wanted = ("workers", "threads", "worker_class", "keepalive", "max_requests",
              "max_requests_jitter", "timeout", "bind", "accesslog")
    settings = {}
    for line in out.splitlines():
        name, _, value = line.partition("=")
        if name.strip() in wanted:
            settings[name.strip()] = value.strip()
    return settings


class Server:
    """gunicorn -c gunicorn.conf.py APP, as a subprocess in its own process group."""

    def __init__(self, app: str, env: dict[str, str], log_path: Path) -> None:
        self.app = app
        self.env = env
        self.port = int(env["PORT"])
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                [gunicorn_bin(), "-c", "gunicorn.conf.py", self.app], cwd=ROOT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        return self

    def wait_healthy(self, timeout: float, workers: int) -> float:
        started = time.perf_counter()
        deadline = started + timeout
        url = f"http://127.0.0.1:{self.port}/healthz"
        healthy = False
        while time.perf_counter() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n"
                                   + self.log_tail())
            if not healthy:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        healthy = response.status == 200
                except (urllib.error.URLError, OSError):
                    pass
            if healthy and self.log().count("Booting worker") >= workers:
                return time.perf_counter() - started
            time.sleep(0.1)
        raise RuntimeError(f"no healthy server after {timeout:.0f} s:\n" + self.log_tail())

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def __exit__(self, *exc: object) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)   # our own group only (own session)
            process.wait(timeout=10)


def log_findings(text: str) -> dict[str, Any]:
    """Worker restarts and anything that looks like an error in gunicorn's log."""
    lines = text.splitlines()
    problems = [line for line in lines if re.search(
        r"Traceback|\[ERROR\]|\[CRITICAL\]|WORKER TIMEOUT|Exception|Error:", line)]
    boots = {m.group(1) for line in lines
             if (m := re.search(r"Booting worker with pid: (\d+)", line))}
    # In the app's log format (gunicorn.conf.py's logconfig_dict), not gunicorn's own.
    restarts = sum(1 for line in lines if "Autorestarting worker" in line)
    return {"worker_boots": len(boots), "autorestarts": restarts,
            "problems": problems[:20], "problem_count": len(problems)}



def check_redis(url: str) -> None:
    """The bench empties this Redis database before each product run (the supporters'
    numbers repeat from run to run, and 40 replies per 10 minutes would run out), so it
    must be a loopback Redis and a database named explicitly, not 0."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme != "redis" or not (host == "localhost" or host.startswith("127.")):
        raise SystemExit("--redis-url must be redis://127.0.0.1:PORT/DB on loopback")
    db = parsed.path.strip("/")
    if not db.isdigit() or db == "0":
        raise SystemExit("--redis-url must name a database other than 0 (e.g. "
                         "redis://127.0.0.1:6379/15): the bench empties it")


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()




def check_database(url: str, expected_supporters: int, messages_sent: int,
                   first: int, count: int) -> dict[str, Any]:
    """What the server wrote, against what the generator sent."""
    from sqlalchemy import text

    from models.db import make_engine

    phones = [supporter_phone(i) for i in range(first, first + count)]
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            def scalar(sql: str) -> Any:
                return c.execute(text(sql)).scalar_one()

            signatures = scalar("SELECT count(*) FROM signatures")
            distinct = scalar("SELECT count(DISTINCT supporter_id) FROM signatures")
            signed_phones = {row[0] for row in c.execute(text(
                "SELECT s.phone FROM signatures g JOIN supporters s ON s.id = g.supporter_id"))}
            counter = scalar("SELECT signature_count FROM petitions WHERE slug = 'sirt'")
            by_channel = scalar("SELECT count FROM channel_counts WHERE channel = 'sms'")
            inbound = scalar("SELECT count(*) FROM inbound_messages")
            consents = scalar("SELECT count(*) FROM consent_records")
    finally:
        engine.dispose()
    strangers = len(signed_phones - set(phones))
    ok = (signatures == expected_supporters and distinct == signatures and strangers == 0
          and counter == signatures and by_channel == signatures and inbound == messages_sent)
    return {"ok": ok, "expected_supporters": expected_supporters, "signatures": signatures,
            "distinct_supporters": distinct, "unknown_signers": strangers,
            "petition_counter": counter, "sms_counter": by_channel,
            "inbound_rows": inbound, "messages_sent": messages_sent,
            "consent_records": consents}


# One database: product, bare and floor, in turns -------------------------------------------

def run_database(kind: str, plan: Plan, args: argparse.Namespace, workdir: Path,
                 run_tag: int) -> dict[str, Any]:
    """The three servers up side by side (those not under load are idle), then rounds in
    turn: the product, the bare endpoint, the floor (bench/floor_app.py, saturation only).
    The first round is the whole plan (saturation and half load); later ones saturation
    only, so a machine whose speed drifts shows in every round's ratios instead of in one
    of the apps."""
    from floor_app import prepare

    out: dict[str, Any] = {"db": kind}
    url = fresh_database(kind, workdir, args.pg_url, "bench")
    prepare(url)
    if args.redis_url:
        flush_redis(args.redis_url)
    limit = plan.warmup + plan.measure + plan.half + 3 * plan.drain + 120

    # Same config file, same environment (so the same worker settings), the same requests.
    port, bare_port, floor_port = free_port(), free_port(), free_port()
    env = server_env(url, port, str(workdir), args.redis_url)
    bare_env = server_env(url, bare_port, str(workdir), args.redis_url)
    floor_env = server_env(url, floor_port, str(workdir), args.redis_url)
    settings = effective_settings(PRODUCT_APP, env)
    for app, app_env in ((BARE_APP, bare_env), (FLOOR_APP, floor_env)):
        other = effective_settings(app, app_env)
        if any(other.get(k) != settings.get(k) for k in ("workers", "threads",
                                                         "worker_class")):
            raise RuntimeError(f"{app} got other settings: {other} vs {settings}")
    out["settings"] = settings
    workers = int(settings.get("workers", "1"))
    print(f"  {kind}: gunicorn {settings.get('worker_class')} {workers} worker(s) x "
          f"{settings.get('threads')} thread(s): product on 127.0.0.1:{port}, floor on "
          f"127.0.0.1:{floor_port}, bare on 127.0.0.1:{bare_port}; {args.rounds} round(s)",
          flush=True)
    with Server(PRODUCT_APP, env, workdir / f"{kind}-product.log") as server, \
            Server(BARE_APP, bare_env, workdir / f"{kind}-bare.log") as bare_server, \
            Server(FLOOR_APP, floor_env, workdir / f"{kind}-floor.log") as floor_server:
        boot = server.wait_healthy(plan.boot_timeout, workers)
        bare_server.wait_healthy(plan.boot_timeout, workers)
        floor_server.wait_healthy(plan.boot_timeout, workers)
        assert server.process is not None and bare_server.process is not None
        assert floor_server.process is not None
        spec = {"url": f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
                "server_pid": server.process.pid, "plan": asdict(plan), "unique": True,
                "first_supporter": 0, "run_tag": run_tag, "half_rate": None}
        bare_spec = {**spec, "url": f"http://127.0.0.1:{bare_port}{WEBHOOK_PATH}",
                     "server_pid": bare_server.process.pid, "unique": False}
        saturation_only = asdict(replace(plan, half=0))
        floor_spec = {**spec, "url": f"http://127.0.0.1:{floor_port}{WEBHOOK_PATH}",
                      "server_pid": floor_server.process.pid, "plan": saturation_only}
        product = run_generator(spec, limit)
        sat, half = product["saturation"], product["half"]
        print(f"  {kind}: round 1: product {sat['rate']:.0f} msgs/s saturated, half load "
              f"{half['rate']:.0f} msgs/s p99 {half['p99_ms']:.1f} ms", flush=True)
        # The bare endpoint's half load is paced at the product's half-load rate.
        bare = run_generator({**bare_spec, "half_rate": half["target_rate"] or None}, limit)
        floor = run_generator(floor_spec, limit)
        floor_used = floor["supporters_used"]
        floor["extra"] = []
        rounds = [(sat["rate"], bare["saturation"]["rate"])]
        floor_rates = [floor["saturation"]["rate"]]  # each round's, beside `rounds`
        print(f"  {kind}: round 1: bare    {rounds[0][1]:.0f}, floor {floor_rates[0]:.0f} "
              "msgs/s saturated", flush=True)
        used = product["supporters_used"]
        product["extra"] = []
        for number in range(2, args.rounds + 1):
            more = run_generator({**spec, "plan": saturation_only,
                                  "first_supporter": used}, limit)
            used += more["supporters_used"]
            product["extra"].append(more["saturation"])
            bare_more = run_generator({**bare_spec, "plan": saturation_only}, limit)
            bare.setdefault("extra", []).append(bare_more["saturation"])
            floor_more = run_generator({**floor_spec, "first_supporter": floor_used}, limit)
            floor_used += floor_more["supporters_used"]
            floor["extra"].append(floor_more["saturation"])
            rounds.append((more["saturation"]["rate"], bare_more["saturation"]["rate"]))
            floor_rates.append(floor_more["saturation"]["rate"])
            print(f"  {kind}: round {number}: product {rounds[-1][0]:.0f}, bare "
                  f"{rounds[-1][1]:.0f}, floor {floor_rates[-1]:.0f} msgs/s saturated",
                  flush=True)
        product_log, bare_log, floor_log = server.log(), bare_server.log(), floor_server.log()
    product["boot_s"] = boot
    product["log"] = log_findings(product_log)
    bare["log"] = log_findings(bare_log)
    floor["log"] = log_findings(floor_log)
    out["product"], out["bare"], out["rounds"] = product, bare, rounds
    out["floor"], out["floor_rates"] = floor, floor_rates
    phases = (sat, half, *product["extra"])
    completed = sum(p["supporters_completed"] for p in phases)
    sent = sum(sum(p["statuses"].values()) for p in phases)
    out["check"] = check_database(url, completed, sent, 0, used)
    out["check"]["abandoned"] = sum(p["supporters_abandoned"] for p in phases)
    floor_phases = (floor["saturation"], *floor["extra"])
    out["floor_check"] = {
        "non200": sum(v for p in floor_phases for k, v in p["statuses"].items() if k != "200"),
        # a request that failed all its attempts: each took one more error than retries
        "failed": sum(p["connection_errors"] - p["retries"] for p in floor_phases),
        "missing": sum(p["content_mismatches"] for p in floor_phases),
        "abandoned": sum(p["supporters_abandoned"] for p in floor_phases)}
    out["floor_check"]["ok"] = not any(out["floor_check"].values())
    print(f"  {kind}: checks {'ok' if out['check']['ok'] else 'FAILED'}, floor "
          f"{'ok' if out['floor_check']['ok'] else 'FAILED'}", flush=True)
    return out


def median_ratio(rounds: list[tuple[float, float]]) -> float:
    ratios = sorted(p / b for p, b in rounds if b)
    if not ratios:
        return float("nan")
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


# Report ----------------------------------------------------------------------------------------

def _ms(value: float) -> str:
    return "-" if value != value or value == 0 else f"{value:.1f}"  # NaN or no data


def product_verdict(r: dict[str, Any]) -> tuple[bool, int, int, int, int]:
    """The product's correctness: the database checks, no 5xx or other non-200, every
    signing reply saying so, nobody abandoned; with the 5xx, other non-200, connection
    error and missing-reply counts."""
    c = r["check"]
    phases = (r["product"]["saturation"], r["product"]["half"], *r["product"]["extra"])
    five = sum(p["statuses"].get("5xx", 0) for p in phases)
    other = sum(v for p in phases for k, v in p["statuses"].items() if k not in ("200", "5xx"))
    conn = sum(p["connection_errors"] for p in phases)
    mismatch = sum(p["content_mismatches"] for p in phases)
    ok = c["ok"] and five == 0 and other == 0 and mismatch == 0 and c["abandoned"] == 0
    return ok, five, other, conn, mismatch


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def _errors(phase: dict[str, Any]) -> str:
    st = phase["statuses"]
    non200 = sum(v for k, v in st.items() if k != "200")
    return f"{non200}/{phase['connection_errors']}"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def report(results: list[dict[str, Any]], plan: Plan, mode: str, elapsed: float,
           redis_url: str, load_before: str) -> str:
    lines: list[str] = []
    w = lines.append
    w("")
    w(f"petitionbot inbound SMS benchmark ({mode}): {plan.concurrency} concurrent supporters "
      f"at saturation (warm-up {plan.warmup:g} s, measured {plan.measure:g} s), then an open "
      f"loop paced at 50% of the product's rate ({plan.half:g} s); {os.cpu_count()} CPUs; "
      f"total {elapsed:.0f} s")
    w("server: gunicorn -c gunicorn.conf.py; one signing = 7 messages; "
      "latency = request sent (open loop: scheduled) -> reply read; reply budget: in the "
      "database" + (f"; REDIS_URL {redis_url}" if redis_url else ""))
    w(f"load average before/after: {load_before} / {_loadavg()}")
    w("")
    header = (f"{'db':<10} {'app':<8} {'workers':>9} | {'msgs/s':>7} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'CPU srv/db/gen/other':>20} {'non200/conn':>11} | {'rate/s':>7} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    w(f"{'':<30}| {'saturation':<57}| half load (open loop)")
    w(header)
    w("-" * len(header))
    for r in results:
        s = r["settings"]
        for app in ("bare", "floor", "product"):
            if app not in r:
                continue
            sat, half = r[app]["saturation"], r[app]["half"]
            cpu = sat.get("cpu") or {}
            other = max(0.0, cpu.get("machine", 0) - cpu.get("server", 0)
                        - cpu.get("postgres", 0) - cpu.get("generator", 0))
            cpu_s = (f"{cpu.get('server', 0):.2f}/{cpu.get('postgres', 0):.2f}/"
                     f"{cpu.get('generator', 0):.2f}/{other:.2f}") if cpu else "-"
            half_rate = f"{half['rate']:.0f}" if half["messages"] else "-"
            w(f"{r['db']:<10} {app:<8} {s.get('workers', '?') + 'x' + s.get('threads', '?'):>9} | "
              f"{sat['rate']:>7.0f} {_ms(sat['p50_ms']):>7} {_ms(sat['p99_ms']):>7} "
              f"{cpu_s:>20} {_errors(sat):>11} | {half_rate:>7} "
              f"{_ms(half['p50_ms']):>7} {_ms(half['p99_ms']):>7} {_ms(half['max_ms']):>7}")
    w("(workers = processes x threads; CPU = cores used during the measured window by "
      "gunicorn / PostgreSQL / the load generator / everything else on the machine; "
      "non200/conn = non-200 responses / connection errors)")
    w("")
    w("saturation by round (product, bare, floor in turns; the table above is round 1)")
    for r in results:
        w(f"{r['db']:<10} " + "; ".join(
            f"product/bare {p:.0f}/{b:.0f} = {_ratio(p, b)}, floor/bare {f:.0f}/{b:.0f} = "
            f"{_ratio(f, b)}" for (p, b), f in zip(r["rounds"], r["floor_rates"], strict=True)))
    w("")
    w("goals (ratios: the median of the rounds'; floor: bench/floor_app.py, a minimal "
      "implementation)")
    w(f"{'db':<10} {'product/bare':>12} {'goal':>6} {'':>4}   {'half-load p99':>13} "
      f"{'goal':>8} {'':>4}   {'floor/bare':>10} {'product/floor':>13}")
    for r in results:
        if "bare" not in r or "product" not in r:
            continue
        ratio = median_ratio(r["rounds"])
        goal = RATIO_GOALS[r["db"]]
        p99 = r["product"]["half"]["p99_ms"]
        by_round = list(zip(r["rounds"], r["floor_rates"], strict=True))
        floor = median_ratio([(f, b) for (_, b), f in by_round])
        of_floor = median_ratio([(p, f) for (p, _), f in by_round])
        w(f"{r['db']:<10} {ratio:>12.2f} {'>=' + format(goal, '.2f'):>6} "
          f"{'PASS' if ratio >= goal else 'FAIL':>4}   {_ms(p99) + ' ms':>13} "
          f"{'<' + format(HALF_LOAD_P99_GOAL_MS, '.0f') + ' ms':>8} "
          f"{'PASS' if p99 < HALF_LOAD_P99_GOAL_MS else 'FAIL':>4}   {floor:>10.2f} "
          f"{of_floor:>13.2f}")
    w("")
    w("correctness (product runs)")
    for r in results:
        if "check" not in r:
            continue
        c = r["check"]
        ok, five, other, conn, mismatch = product_verdict(r)
        w(f"{r['db']:<10} {'PASS' if ok else 'FAIL'}: {c['expected_supporters']} supporters "
          f"completed, {c['signatures']} signatures ({c['distinct_supporters']} distinct, "
          f"{c['unknown_signers']} unknown), counters {c['petition_counter']}/"
          f"{c['sms_counter']}, inbound rows {c['inbound_rows']} of {c['messages_sent']} sent; "
          f"5xx {five}, other non-200 {other}, connection errors {conn} (retried), "
          f"'signed' reply missing {mismatch}, abandoned {c['abandoned']}")
        f = r["floor_check"]
        w(f"{r['db']:<10} floor {'PASS' if f['ok'] else 'FAIL'}: non-200 {f['non200']}, "
          f"failed after retries {f['failed']}, 'signed' reply missing {f['missing']}, "
          f"abandoned {f['abandoned']}")
    w("")
    for r in results:
        for app in ("product", "floor", "bare"):
            if app not in r:
                continue
            log = r[app]["log"]
            sat = r[app]["saturation"]
            notes = [f"{log['worker_boots']} worker boot(s), {log['autorestarts']} "
                     f"max_requests restart(s)"]
            if sat.get("cpu", {}).get("per_worker"):
                notes.append(f"per-worker CPU {sat['cpu']['per_worker']}")
            if sat.get("cpu"):
                notes.append(f"machine busy {sat['cpu']['machine']:.2f} cores")
            if any(p["pool_exhausted"] for p in (sat, *r[app].get("extra", ()))):
                notes.append("SUPPORTER POOL EXHAUSTED (raise PRODUCT_RATE_CEILING)")
            if r[app]["half"]["late_ticks"]:
                notes.append(f"{r[app]['half']['late_ticks']} paced sends >10 ms late")
            if log["problem_count"]:
                notes.append(f"{log['problem_count']} error line(s) in the server log")
            w(f"{r['db']:<10} {app:<8} " + "; ".join(notes))
            for line in log["problems"][:5]:
                w(f"    {line[:160]}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases: about 3 minutes")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3,
                        help="saturation rounds, product, bare and floor in turns (default 3)")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL", PG_URL),
                        help=f"loopback PostgreSQL database to wipe and use (default {PG_URL})")
    parser.add_argument("--redis-url", default="",
                        help="REDIS_URL given to the servers (the reply budget is kept in "
                             "the database; only broadcast pacing uses Redis); a loopback "
                             "database other than 0, which the bench empties")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="concurrent supporters at saturation (default 32)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep-logs", type=Path, help="copy gunicorn logs to this folder")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")

    plan = QUICK if args.quick else FULL
    if args.concurrency:
        plan = Plan(**{**asdict(plan), "concurrency": args.concurrency})
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if args.redis_url:
        check_redis(args.redis_url)
    sys.path.insert(0, str(ROOT))
    load_before = _loadavg()
    started = time.perf_counter()
    run_tag = int(time.time()) & 0xFFFFFFFF
    results = []
    print(f"bench/inbound.py ({'quick' if args.quick else 'full'}): "
          f"{', '.join(kinds)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="petitionbot-bench-") as tmp:
        workdir = Path(tmp)
        try:
            for kind in kinds:
                results.append(run_database(kind, plan, args, workdir, run_tag))
        finally:
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in workdir.glob("*.log"):
                    shutil.copy(log, args.keep_logs / log.name)
    elapsed = time.perf_counter() - started
    print(report(results, plan, "quick" if args.quick else "full", elapsed, args.redis_url,
                 load_before))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    # The exit status is what the report says: both correctness lines PASS for every database.
    failed = any(not (product_verdict(r)[0] and r["floor_check"]["ok"]) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
