"""Where an inbound SMS's time goes: per-step time and SQL, and cProfile, in-process (speed work).

    .venv/bin/python tools/profile_inbound.py [--db sqlite|postgresql] [--supporters 300]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import fresh_database  # noqa: E402
from inbound import ACCOUNT_SID, AUTH_TOKEN, PATH, PUBLIC_BASE_URL, supporters  # noqa: E402

STEPS = ("Hi", "SIGN", "YES(consent)", "name", "postcode", "YES(review)", "NO(updates)")


def make_app(url: str) -> Any:
    from bot.infra.settings import Settings
    from webhooks import create_app

    settings = Settings(database_url=url, config_path=str(ROOT / "config.toml"),
                        public_base_url=PUBLIC_BASE_URL, secret_key="bench",
                        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN)
    return create_app(settings)


class SqlCounter:
    """Every statement the driver runs, however it was issued (Connection.execute, or
    models.prepared straight on the cursor): SQLite's trace callback, psycopg's execute."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.current: list[str] = []
        if engine.dialect.name == "sqlite":  # every transaction (connections are kept)
            event.listen(engine, "begin", lambda connection: (
                self.current.append("BEGIN IMMEDIATE"),
                connection.connection.driver_connection.set_trace_callback(
                    self.current.append)))
        else:
            import psycopg

            counter, execute = self, psycopg.Cursor.execute

            def traced(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
                counter.current.append(str(query))
                return execute(cursor, query, *args, **kwargs)

            psycopg.Cursor.execute = traced  # type: ignore[method-assign]

    def take(self) -> list[str]:
        out, self.current = self.current, []
        return out


def shape(statement: str) -> str:
    s = " ".join(statement.split())
    s = re.sub(r"\(\?(, \?)*\)|\(%\(.*?\)s(, %\(.*?\)s)*\)", "(...)", s)
    m = re.match(r"(SELECT .*? FROM \w+|INSERT INTO \w+|UPDATE \w+|DELETE FROM \w+|"
                 r"BEGIN.*|COMMIT|ROLLBACK|SAVEPOINT.*|RELEASE.*|select pg_catalog.*|"
                 r"SELECT 1|PRAGMA.*)", s, re.IGNORECASE)
    text = m.group(1) if m else s[:60]
    if "FOR UPDATE" in s:
        text += " ... FOR UPDATE"
    if "ON CONFLICT" in s:
        text += " ON CONFLICT DO NOTHING"
    return text[:90]


def run_http(app: Any, requests: list[list[tuple[bytes, str]]], counter: SqlCounter,
             profile: cProfile.Profile | None) -> dict[str, Any]:
    client = app.test_client()
    per_step_time: dict[int, list[float]] = defaultdict(list)
    per_step_sql: dict[int, list[int]] = defaultdict(list)
    shapes: dict[int, Counter[str]] = defaultdict(Counter)
    bad = 0
    counter.take()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for supporter in requests:
        for step, (body, sig) in enumerate(supporter):
            t0 = time.perf_counter()
            if profile:
                profile.enable()
            response = client.post(PATH, data=body, headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": sig})
            if profile:
                profile.disable()
            per_step_time[step].append(time.perf_counter() - t0)
            statements = counter.take()
            per_step_sql[step].append(len(statements))
            shapes[step].update(shape(s) for s in statements)
            if response.status_code != 200:
                bad += 1
    return {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0,
            "messages": 7 * len(requests), "time": per_step_time, "sql": per_step_sql,
            "shapes": shapes, "bad": bad}


def run_service(app: Any, requests: list[list[tuple[bytes, str]]]) -> dict[str, Any]:
    """The same messages straight into Service.receive (no Flask, no signature)."""
    from urllib.parse import parse_qsl

    from bot.core.conversation import Channel
    from bot.shell.service import Received

    service = app.extensions["petitionbot"].service
    forms = [dict(parse_qsl(body.decode())) for supporter in requests for body, _ in supporter]
    t0 = time.perf_counter()
    c0 = time.process_time()
    for form in forms:
        service.receive(Received(Channel.SMS, form["From"], form["Body"], form["MessageSid"],
                                 phone=form["From"]))
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
            "messages": len(forms)}


def grouped(stats: pstats.Stats) -> list[tuple[str, int]]:
    """Own (tottime) seconds by package."""
    groups: Counter[str] = Counter()  # float seconds, despite the name
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        f = filename.replace("\\", "/")
        if "site-packages/" in f:
            name = f.split("site-packages/")[1].split("/")[0]
        elif f"{ROOT}/" in f:
            name = f.split(f"{ROOT}/")[1].rsplit("/", 1)[0] + "/ (project)"
        elif f.startswith("~") or "built-in" in func or f.startswith("<"):
            name = "builtins: " + (func.split(" of ")[0].strip("<>")[:40] if "method" in func
                                   else func[:40])
            name = re.sub(r"built-in method ", "", name)
        else:
            name = "stdlib: " + Path(f).stem
        groups[name] += tt
    return groups.most_common(25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql+psycopg://127.0.0.1:5432/bench")
    parser.add_argument("--supporters", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--wall", action="store_true",
                        help="profile wall time (waits included) instead of CPU time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="petitionbot-profile-") as tmp:
        url = fresh_database(args.db, Path(tmp), args.pg_url)
        app = make_app(url)
        engine = app.extensions["petitionbot"].engine
        counter = SqlCounter(engine)
        n = args.supporters
        run_http(app, supporters(90_000, 20), counter, None)  # warm caches
        plain = run_http(app, supporters(0, n), counter, None)
        profile = cProfile.Profile(time.perf_counter if args.wall else time.process_time)
        profiled = run_http(app, supporters(n, n), counter, profile)
        service = run_service(app, supporters(2 * n, n))
        engine.dispose()

    m = plain["messages"]
    print(f"\n== {args.db}: {n} supporters x 7 messages, one thread, in-process ==")
    print(f"through Flask (test client): {plain['wall'] / m * 1000:.2f} ms/message wall, "
          f"{plain['cpu'] / m * 1000:.2f} ms CPU  -> at most {m / plain['cpu']:.0f} msgs/s "
          f"per core")
    print(f"Service.receive alone:       {service['wall'] / service['messages'] * 1000:.2f} "
          f"ms/message wall, {service['cpu'] / service['messages'] * 1000:.2f} ms CPU")
    print(f"non-200 responses: {plain['bad'] + profiled['bad']}")
    print("\nper step:   ms wall (mean)   SQL statements")
    total_sql = 0
    for step in range(7):
        times = plain["time"][step]
        sql = plain["sql"][step]
        total_sql += sum(sql)
        print(f"  {STEPS[step]:<14} {sum(times) / len(times) * 1000:8.2f}   "
              f"{sum(sql) / len(sql):6.1f}")
    print(f"  mean per message: {total_sql / m:.1f} statements")
    print("\nstatements by step (count per message):")
    for step in range(7):
        print(f"  {STEPS[step]}:")
        for text, count in plain["shapes"][step].most_common():
            print(f"    {count / n:4.1f}  {text}")
    stats = pstats.Stats(profile)
    print(f"\ncProfile of {'wall' if args.wall else 'CPU'} time (through Flask, "
          f"{profiled['messages']} messages, profiler overhead included): own time by package")
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    for name, tt in grouped(stats):
        print(f"  {tt / total * 100:5.1f}%  {tt / profiled['messages'] * 1e6:7.0f} us/msg  "
              f"{name}")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
        text = out.getvalue()
        print(f"\ncProfile top {args.top} by {order}:")
        print(text[text.index("   ncalls"):].replace(str(ROOT) + "/", "")
              .replace(str(Path(sys.prefix)) + "/lib/python3.11/site-packages/", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
