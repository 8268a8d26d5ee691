"""What the benchmarks share: options, scratch databases, servers on loopback, the table."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def options(doc: str, pg_database: str) -> argparse.ArgumentParser:
    """--quick, --db and --pg-url (default: a loopback database `pg_database` that the
    bench creates and wipes itself)."""
    url = f"postgresql+psycopg://127.0.0.1:5432/{pg_database}"
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller and shorter")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=url,
                        help=f"loopback PostgreSQL database to wipe and use (default {url})")
    return parser


def fresh_database(kind: str, workdir: Path, pg_url: str, code: Path = ROOT) -> str:
    """An empty database migrated by `petitionbot db upgrade` of the checkout `code`
    (SQLite: a file in `workdir`; PostgreSQL: `pg_url`, created if missing, its public
    schema dropped); returns its URL."""
    from sqlalchemy.engine import make_url

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        for suffix in ("", "-wal", "-shm"):
            (workdir / f"bench.db{suffix}").unlink(missing_ok=True)
    else:
        import psycopg

        url, parsed = pg_url, make_url(pg_url)
        host, name = parsed.host or "127.0.0.1", parsed.database or ""
        if not (host == "localhost" or host.startswith("127.") or host == "::1"):
            raise SystemExit(f"refusing a non-loopback database host: {host}")
        if name in ("", "postgres", "test") or name.startswith("template"):
            raise SystemExit(f"refusing to wipe the database {name!r}: name one of its own")
        dsn = parsed.set(drivername="postgresql")
        with psycopg.connect(dsn.set(database="postgres").render_as_string(False),
                             autocommit=True, connect_timeout=5) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(dsn.render_as_string(False), autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")
    done = subprocess.run([sys.executable, "-m", "bot", "db", "upgrade"], cwd=code,
                          env={**os.environ, "PYTHONPATH": str(code), "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"petitionbot db upgrade in {code}:\n{done.stderr[-3000:]}")
    return url


def product_database(kind: str, workdir: Path, pg_url: str,
                     config_path: Path = ROOT / "config.toml") -> tuple[str, Any, Any, Any, int]:
    """A fresh database with the petitions' rows, for benchmarks that drive this checkout's
    code in-process: (URL, engine, sessions, config, the id of the petition `sirt`)."""
    from bot.infra.config import load_config
    from bot.shell.service import Service
    from models.db import make_engine, make_sessions
    from models.supporters import petition_id

    url = fresh_database(kind, workdir, pg_url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    config = load_config(config_path)
    Service(config, sessions).sync_petitions()
    with sessions() as session:
        pid = petition_id(session, "sirt")
    assert pid is not None
    return url, engine, sessions, config, pid


def series(dialect: str) -> tuple[str, str]:
    """(WITH prefix, FROM source) giving rows g = :lo .. :hi, for set-based generation."""
    if dialect == "postgresql":
        return "", "generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS s(g)"
    return ("WITH RECURSIVE s(g) AS (SELECT :lo UNION ALL SELECT g + 1 FROM s WHERE g < :hi) ",
            "s")


def after_bulk_load(engine: Any, tables: tuple[str, ...]) -> None:
    """PostgreSQL: sequences past the ids written, statistics fresh (as autovacuum would)."""
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as connection:
        for table in tables:
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT max(id) FROM {table}))"))
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE"))


def run_child(script: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """`script --child ...` in a process of its own: the JSON it prints last."""
    done = subprocess.run([sys.executable, script, "--child", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def peak_mb() -> float:
    """This process's peak resident memory since exec (VmHWM; not ru_maxrss, which on
    Linux keeps the high-water mark of the parent the child was forked from)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s*(\d+)", status)[1]) / 1024  # type: ignore[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A command serving HTTP on loopback, in its own process group, logging to a file."""

    def __init__(self, command: list[str], log: Path, cwd: Path = ROOT,
                 env: dict[str, str] | None = None) -> None:
        self.log_path = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=cwd, env=env or dict(os.environ),
                                            stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, url: str, timeout: float = 60) -> None:
        """Until `url` answers (any status but 5xx)."""
        for _ in range(int(timeout * 10)):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.log_path.name}: exited\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.log_path.name}: no answer in {timeout:g} s\n"
                           f"{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own group (own session)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@dataclass
class Result:
    """One database's rows: what was measured, the product's figure, the baselines'."""

    db: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measure: str, product: str, baseline: str, goal: str = "",
            ok: bool | None = None) -> None:
        verdict = "" if ok is None else " PASS" if ok else " FAIL"
        self.rows.append((measure, product, baseline, goal + verdict))
        print(f"  {self.db}: {measure}: {product}  (baseline {baseline}){verdict}", flush=True)


def run(args: argparse.Namespace, name: str, each: Callable[[str, Path], Result],
        about: str = "") -> list[Result]:
    """`each(database kind, scratch folder)` for the databases asked for; prints the table."""
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix=f"petitionbot-bench-{name}-") as tmp:
        results = [each(kind, Path(tmp)) for kind in (
            ["sqlite", "postgresql"] if args.db == "both" else [args.db])]
    print(report(f"petitionbot {name} benchmark ({'quick' if args.quick else 'full'}){about}",
                 results, load_before))
    return results


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(title: str, results: list[Result], load_before: str) -> str:
    """The table, one block per database, columns as wide as their contents."""
    lines = ["", f"{title}; {os.cpu_count()} CPUs; load average before/after "
             f"{load_before} / {loadavg()}"]
    header = ("measure", "product", "baseline (same run)", "goal")
    for r in results:
        widths = [max(len(row[i]) for row in (header, *r.rows)) for i in range(4)]
        table = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                 for row in (header, *r.rows)]
        lines += ["", f"[{r.db}]", table[0], "-" * (sum(widths) + 6), *table[1:]]
        lines += [f"  - {note}" for note in r.notes]
    return "\n".join(lines)
