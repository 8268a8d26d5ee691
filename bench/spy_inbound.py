"""Sample the live gunicorn workers with py-spy while bench/inbound.py's saturation load runs.

    .venv/bin/python bench/spy_inbound.py --py-spy /path/to/py-spy [--db sqlite|postgresql]

py-spy is not a project dependency: install it anywhere (`pip install --target DIR py-spy`)
and pass its path. Starts the product exactly as bench/inbound.py does (fresh database,
gunicorn -c gunicorn.conf.py), runs the saturation phase, records every worker with py-spy
(only the thread holding the GIL, so where each process's CPU goes), and prints where the
samples fall: by package (inclusive of what it calls, and own) and the top functions by
own samples.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from inbound import (  # noqa: E402
    PG_URL,
    PRODUCT_APP,
    QUICK,
    WEBHOOK_PATH,
    Plan,
    Server,
    effective_settings,
    free_port,
    fresh_database,
    run_generator,
    server_env,
)

CATEGORIES = (
    ("sqlalchemy/", "sqlalchemy"), ("psycopg/", "psycopg"), ("sqlite3/", "sqlite3"),
    ("gunicorn/", "gunicorn"), ("werkzeug/", "werkzeug"), ("flask/", "flask"),
    ("twilio/", "twilio"), ("phonenumbers/", "phonenumbers"), ("limits/", "limits"),
    ("redis/", "redis"), ("bot/", "project bot/"), ("models/", "project models/"),
    ("webhooks/", "project webhooks/"),
)


def category(frame: str) -> str:
    for needle, name in CATEGORIES:
        if needle in frame:
            return name
    if "python3.11/" in frame:
        return "stdlib"
    return "other"


def function(frame: str) -> str:
    """'name (path/file.py:123)' -> 'name (file.py)', paths shortened."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    path = path.replace(str(ROOT) + "/", "")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "python3.11/" in path:
        path = path.split("python3.11/", 1)[1]
    return f"{name} ({path})"


def is_project(frame: str) -> bool:
    return f"{ROOT}/" in frame and "/.venv/" not in frame and "/bench/" not in frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--py-spy", required=True, help="path of the py-spy executable")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw samples here")
    args = parser.parse_args()

    plan = Plan(**{**asdict(QUICK), "warmup": 2.0, "measure": args.seconds + 2, "half": 0})
    with tempfile.TemporaryDirectory(prefix="petitionbot-spy-") as tmp:
        workdir = Path(tmp)
        url = fresh_database(args.db, workdir, args.pg_url)
        port = free_port()
        env = server_env(url, port, tmp, "")
        workers = int(effective_settings(PRODUCT_APP, env)["workers"])
        raw = workdir / "samples.txt"
        with Server(PRODUCT_APP, env, workdir / "server.log") as server:
            server.wait_healthy(plan.boot_timeout, workers)
            assert server.process is not None
            spec = {"url": f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
                    "server_pid": server.process.pid, "plan": asdict(plan), "unique": True,
                    "first_supporter": 0, "run_tag": 7, "half_rate": None}
            results: dict[str, object] = {}
            load = threading.Thread(target=lambda: results.update(
                run_generator(spec, plan.warmup + plan.measure + 120)))
            load.start()
            time.sleep(plan.warmup + 1)
            subprocess.run([args.py_spy, "record", "--pid", str(server.process.pid),
                            "--subprocesses", "--gil", "--full-filenames", "--rate", "200",
                            "--duration", str(int(args.seconds)), "--format", "raw",
                            "--output", str(raw)], check=True, capture_output=True,
                           timeout=args.seconds + 60)
            load.join(timeout=plan.measure + 180)
        stacks = raw.read_text().splitlines()
        if args.raw:
            args.raw.write_text(raw.read_text())

    own: Counter[str] = Counter()
    own_cat: Counter[str] = Counter()
    incl_cat: Counter[str] = Counter()
    incl_project: Counter[str] = Counter()
    total = 0
    for line in stacks:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        own[function(leaf)] += count
        own_cat[category(leaf)] += count
        for name in {category(f) for f in frames}:
            incl_cat[name] += count
        for name in {function(f) for f in frames if is_project(f)}:
            incl_project[name] += count
    sat = results.get("saturation", {})
    rate = sat.get("rate", 0.0) if isinstance(sat, dict) else 0.0
    print(f"\n== py-spy on {workers} gunicorn worker(s), {args.db}, saturation "
          f"{rate:.0f} msgs/s: {total} samples holding the GIL ==")
    print("by package:   inclusive   own")
    for name, count in incl_cat.most_common():
        print(f"  {name:<20} {count / total * 100:6.1f}%  {own_cat[name] / total * 100:6.1f}%")
    print(f"\nproject functions, inclusive (top {args.top}):")
    for name, count in incl_project.most_common(args.top):
        print(f"  {count / total * 100:5.1f}%  {name}")
    print(f"\ntop {args.top} functions by own samples:")
    for name, count in own.most_common(args.top):
        print(f"  {count / total * 100:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
