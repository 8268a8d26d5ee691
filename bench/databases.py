"""Scratch databases for the benchmarks: always on loopback, wiped and migrated."""

from __future__ import annotations

from pathlib import Path


def require_loopback(url: str) -> None:
    from sqlalchemy.engine import make_url

    host = make_url(url).host or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise SystemExit(f"refusing a non-loopback database host: {host}")


def fresh_database(kind: str, workdir: Path, pg_url: str, name: str = "bench") -> str:
    """A migrated, empty database (SQLite file `name`.db in `workdir`, or the PostgreSQL
    database at `pg_url`, created if missing); returns its URL."""
    from sqlalchemy import text

    from models.db import make_engine
    from models.migrate import upgrade

    if kind == "sqlite":
        path = workdir / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        url = pg_url
        require_loopback(url)
        ensure_pg_database(url)
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def ensure_pg_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database or "bench"
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
