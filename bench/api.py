"""Staff API speed: what each token's request budget costs a request.

    .venv/bin/python bench/api.py            # 3,000 requests per measure
    .venv/bin/python bench/api.py --quick    # 600 requests per measure

The budget is counted in the database (a `rate_windows` row per token, locked while it is
read and written: webhooks/api_v1/auth.py), so it adds a row write to every API request.
For each database (SQLite in a temporary folder, then PostgreSQL on loopback), through the
Flask test client in this process, GET /api/v1/petitions/sirt (a cheap read, so the
budget's share shows) with an admin's token:
1. one client after another, the budget check on, its rows light (a token's first
   requests) and full (each token's row already holding 590 recent hits, the shipped
   budget being 600 per 10 minutes: the most JSON a request rewrites), against the same
   requests with the check taken out (the baseline), in alternating blocks;
2. four threads at once on ONE token (its row is locked per request, so they queue on it),
   against the same without the check.
The figures are requests per second and the cost per request in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

sys.path.insert(0, str(harness.ROOT))

CONFIG = harness.ROOT / "config.toml"
PATH = "/api/v1/petitions/sirt"
FULL_ROW = 590      # hits already in a "full" token's window
PER_TOKEN = 9       # requests per full token, so it stays under the shipped 600
BLOCKS = 6          # alternating blocks of each measure, for fairness
THREADS = 4


@dataclass(frozen=True)
class Plan:
    requests: int  # per measure


FULL, QUICK = Plan(3000), Plan(600)


def make_app(url: str) -> Any:
    from bot.infra.settings import Settings
    from webhooks import create_app

    return create_app(Settings(database_url=url, config_path=str(CONFIG),
                               public_base_url="http://localhost",
                               secret_key="bench-api-secret"))


def make_tokens(sessions: Any, count: int) -> list[str]:
    """`count` new tokens of the bench's admin."""
    from sqlalchemy import select

    from bot.shell import api_tokens
    from models import StaffUser

    now = dt.datetime.now(dt.UTC)
    email = "bench-api@planets.example"
    with sessions.begin() as session:
        admin = session.scalar(select(StaffUser).where(StaffUser.email == email))
        if admin is None:
            admin = StaffUser(email=email, role="admin", active=True, created_at=now,
                              password_hash="!")
            session.add(admin)
            session.flush()
        return [api_tokens.issue(session, admin, f"bench {n}", now).secret
                for n in range(count)]


def fill(sessions: Any, app: Any, tokens: list[str], hits: int) -> None:
    """Give each token's budget row `hits` recent hits, as a busy integration's would be."""
    from bot.shell import api_tokens, throttle
    from models import RateWindow
    from webhooks.api_v1.auth import BUDGET

    now = dt.datetime.now(dt.UTC)
    start = now.timestamp() - 60
    recent = [start + n * 50 / hits for n in range(hits)]
    with sessions.begin() as session:
        for token in tokens:
            key = throttle.key(BUDGET, str(app.config["SECRET_KEY"]),
                               api_tokens.token_hash(token))
            session.merge(RateWindow(key=key, hits=recent, updated_at=now))


@contextmanager
def budget_off() -> Iterator[None]:
    """The baseline: the same requests with the budget check taken out."""
    from webhooks.api_v1 import auth

    kept = auth._spend
    auth._spend = lambda session, token, at: 0
    try:
        yield
    finally:
        auth._spend = kept


def one_by_one(app: Any, tokens: list[str], count: int) -> float:
    """Seconds for `count` requests, one after another, over `tokens` in turn."""
    client = app.test_client()
    started = time.perf_counter()
    for n in range(count):
        token = tokens[n * len(tokens) // count]
        response = client.get(PATH, headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)}")
    return time.perf_counter() - started


def at_once(app: Any, token: str, count: int) -> float:
    """Seconds for `count` requests from THREADS threads at once on one token."""
    barrier = threading.Barrier(THREADS + 1)
    failures: list[str] = []

    def work() -> None:
        client = app.test_client()
        barrier.wait()
        for _ in range(count // THREADS):
            response = client.get(PATH, headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                failures.append(str(response.status_code))

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"refused: {failures[:5]}")
    return time.perf_counter() - started


def alternate(measures: dict[str, Callable[[int], float]], count: int) -> dict[str, float]:
    """Each measure's total seconds for `count` requests, run in alternating blocks."""
    totals = dict.fromkeys(measures, 0.0)
    for _ in range(BLOCKS):
        for name, measure in measures.items():
            totals[name] += measure(count // BLOCKS)
    return totals


def run_database(kind: str, plan: Plan, pg_url: str, tmp: Path) -> harness.Result:
    url, engine, sessions, _config, _pid = harness.product_database(kind, tmp, pg_url)
    app = make_app(url)
    result = harness.Result(kind)
    n = plan.requests
    # Fresh tokens per block, so "light" rows stay light and "full" ones stay under 600.
    light = make_tokens(sessions, 2 * BLOCKS)
    full = make_tokens(sessions, n // PER_TOKEN + BLOCKS)
    fill(sessions, app, full, FULL_ROW)
    spare = make_tokens(sessions, 1)
    used = {"light": 0, "full": 0}

    def with_budget(pool: list[str], name: str, per_block: int) -> Callable[[int], float]:
        def measure(count: int) -> float:
            tokens = pool[used[name]:used[name] + per_block]
            used[name] += per_block
            return one_by_one(app, tokens, count)
        return measure

    def without(count: int) -> float:
        with budget_off():
            return one_by_one(app, spare, count)

    one_by_one(app, spare, 50)  # warm up: connections, the OpenAPI-free code paths
    totals = alternate({
        "off": without,
        "light": with_budget(light, "light", 1),
        "full": with_budget(full, "full", n // BLOCKS // PER_TOKEN + 1),
    }, n)

    def rate(seconds: float) -> str:
        return f"{n / seconds:,.0f} req/s ({seconds / n * 1000:.2f} ms)"

    base = totals["off"]
    for name, label in (("light", "light rows (a token's first requests)"),
                        ("full", f"full rows ({FULL_ROW} hits each)")):
        extra = (totals[name] - base) / n * 1000
        result.add(f"GET {PATH}, one by one, budget on, {label}", rate(totals[name]),
                   f"budget off {rate(base)}; +{extra:.2f} ms a request, "
                   f"{totals[name] / base - 1:+.0%}")

    # A fresh token each time, its requests within the shipped 600: none is refused.
    burst = min(n // 3, 580) // THREADS * THREADS
    hot = make_tokens(sessions, 3)
    with budget_off():
        threads_off = statistics.median(at_once(app, spare[0], burst) for _ in range(3))
    threads_on = statistics.median(at_once(app, token, burst) for token in hot)
    result.add(f"GET {PATH}, {THREADS} threads at once on one token, budget on "
               f"(median of 3 x {burst})", f"{burst / threads_on:,.0f} req/s",
               f"budget off {burst / threads_off:,.0f} req/s; "
               f"{threads_on / threads_off - 1:+.0%}")
    result.notes.append("in-process Flask test client, no HTTP server: the budget's share of "
                        "a request here is larger than behind gunicorn")
    app.extensions["petitionbot"].engine.dispose()
    engine.dispose()
    return result


def main() -> int:
    args = harness.options(__doc__ or "", "bench_api").parse_args()
    plan = QUICK if args.quick else FULL
    harness.run(args, "api", lambda kind, tmp: run_database(kind, plan, args.pg_url, tmp),
                f"; {plan.requests:,} requests per measure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
