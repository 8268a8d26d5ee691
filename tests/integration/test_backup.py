"""Backups (docs/deploy.md, "Backups"): `petitionbot db backup PATH` on SQLite, and the
documented restore (stop, copy the file back) gives the same counts and signatures; on
PostgreSQL the command prints the pg_dump line, which, with pg_restore, does the same."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from bot.core.conversation import Channel
from bot.infra.config import Config
from bot.shell.service import Received, Service
from models import Base, ChannelCount, Petition, Signature
from models.db import make_engine, make_sessions
from models.migrate import pending, upgrade
from tests.conftest import CONFIG, PG_URL

PEOPLE = [("+447700900301", "Amira Okafor", "SW1A 1AA", Channel.SMS),
          ("+447700900302", "Ben Adeyemi", "EH1 1YZ", Channel.WHATSAPP),
          ("+447700900303", "Cara Jones", "CF10 1AA", Channel.SMS)]


def petitionbot(cwd: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOG_"))}
    env.update(DATABASE_URL=database_url, PETITIONBOT_CONFIG=str(CONFIG))
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def sign_up(service: Service) -> None:
    for phone, name, postcode, channel in PEOPLE:
        for body in ("Hi", "SIGN", "YES", name, postcode, "YES", "YES"):
            service.receive(Received(channel, phone, body, f"SM{uuid.uuid4().hex}", phone=phone))


def contents(engine: Engine) -> dict[str, Any]:
    """Counts and every signature, as the decision maker's export would see them."""
    with make_sessions(engine)() as session:
        return {
            "rows": {t.name: session.scalar(select(func.count()).select_from(t))
                     for t in Base.metadata.sorted_tables},
            "counts": sorted(session.execute(select(Petition.slug, Petition.signature_count,
                                                    Petition.last_number)).all()),
            "by_channel": sorted(session.execute(select(ChannelCount.channel,
                                                        ChannelCount.count)).all()),
            "signatures": sorted(session.execute(select(
                Signature.number, Signature.name, Signature.postcode, Signature.postcode_area,
                Signature.nation, Signature.channel, Signature.signed_at)).all()),
        }


@pytest.fixture
def sqlite_db(tmp_path: Path, config: Config) -> Iterator[tuple[str, Engine]]:
    """A SQLite database in use (WAL), with three signatures, whichever database the rest
    of the suite runs on."""
    url = f"sqlite:///{tmp_path / 'live' / 'petitionbot.db'}"
    (tmp_path / "live").mkdir()
    engine = make_engine(url)
    upgrade(engine)
    service = Service(config, make_sessions(engine))
    service.sync_petitions()
    sign_up(service)
    yield url, engine
    engine.dispose()


def test_a_backup_restored_into_a_new_database_has_the_same_counts_and_signatures(
        sqlite_db: tuple[str, Engine], tmp_path: Path, config: Config) -> None:
    url, engine = sqlite_db
    before = contents(engine)
    assert len(before["signatures"]) == 3
    target = tmp_path / "backups" / "petitionbot-2026-11-27.db"
    target.parent.mkdir()

    done = petitionbot(tmp_path, url, "db", "backup", str(target))
    assert done.returncode == 0, done.stderr
    assert f"to {target}" in done.stdout
    assert oct(target.stat().st_mode & 0o777) == "0o600"  # it holds personal data
    assert not list(target.parent.glob("*.partial"))
    assert not Path(f"{target}-wal").exists()
    with sqlite3.connect(target) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    # The documented restore: into a new place (a new server), copy the file back.
    restored_path = tmp_path / "restored" / "petitionbot.db"
    restored_path.parent.mkdir()
    shutil.copyfile(target, restored_path)
    restored = make_engine(f"sqlite:///{restored_path}")
    try:
        assert pending(restored) == []  # the schema came too: no `db upgrade` needed
        assert contents(restored) == before
        # And it carries on where the original left off: the next signer is number 4.
        service = Service(config, make_sessions(restored))
        for body in ("Hi", "SIGN", "YES", "Dafydd Evans", "LL57 2DG", "YES"):
            service.receive(Received(Channel.SMS, "+447700900304", body,
                                     f"SM{uuid.uuid4().hex}", phone="+447700900304"))
        with make_sessions(restored)() as session:
            assert session.scalar(select(func.max(Signature.number))) == 4
    finally:
        restored.dispose()


def test_a_backup_taken_while_people_sign_is_consistent(
        sqlite_db: tuple[str, Engine], tmp_path: Path, config: Config) -> None:
    url, engine = sqlite_db
    service = Service(config, make_sessions(engine))
    stop = threading.Event()

    def keep_signing() -> None:
        i = 0
        while not stop.is_set() and i < 200:
            i += 1
            phone = f"+4477009{i:05d}"
            for body in ("Hi", "SIGN", "YES", f"Signer {i}", "G1 1AA", "YES"):
                service.receive(Received(Channel.SMS, phone, body, f"SM{uuid.uuid4().hex}",
                                         phone=phone))

    writer = threading.Thread(target=keep_signing)
    writer.start()
    try:
        target = tmp_path / "during.db"
        done = petitionbot(tmp_path, url, "db", "backup", str(target))
    finally:
        stop.set()
        writer.join(timeout=120)
    assert done.returncode == 0, done.stderr
    copy = make_engine(f"sqlite:///{target}")
    try:
        snapshot = contents(copy)
    finally:
        copy.dispose()
    # One moment's state: the counters agree with the signatures they count.
    [(_slug, count, last)] = snapshot["counts"]
    assert count == last == len(snapshot["signatures"]) >= 3
    assert sum(n for _, n in snapshot["by_channel"]) == count


def test_backup_refuses_to_overwrite_the_database_or_write_nowhere(
        sqlite_db: tuple[str, Engine], tmp_path: Path) -> None:
    url, _ = sqlite_db
    itself = make_url(url).database or ""
    done = petitionbot(tmp_path, url, "db", "backup", itself)
    assert done.returncode != 0 and "overwrite the database itself" in done.stderr
    done = petitionbot(tmp_path, url, "db", "backup", str(tmp_path / "no" / "such" / "x.db"))
    assert done.returncode != 0 and "no such folder" in done.stderr
    missing = petitionbot(tmp_path, f"sqlite:///{tmp_path / 'absent.db'}", "db", "backup",
                          str(tmp_path / "x.db"))
    assert missing.returncode != 0 and "no SQLite database" in missing.stderr


# PostgreSQL ---------------------------------------------------------------------------------

def test_on_postgresql_backup_points_to_pg_dump_and_exits_non_zero(tmp_path: Path) -> None:
    url = "postgresql+psycopg://petitionbot:secret-pw@db.internal:5433/petitionbot"
    done = petitionbot(tmp_path, url, "db", "backup", "/var/backups/pb.dump")
    assert done.returncode != 0
    assert ("pg_dump --format=custom --file=/var/backups/pb.dump "
            "postgresql://petitionbot@db.internal:5433/petitionbot") in done.stderr
    assert "pg_restore" in done.stderr
    assert "secret-pw" not in done.stderr + done.stdout


@pytest.mark.postgres_only
def test_the_printed_pg_dump_line_and_pg_restore_bring_back_the_same_signatures(
        database_url: str, engine: Engine, service: Service, tmp_path: Path) -> None:
    sign_up(service)
    before = contents(engine)
    dump = tmp_path / "petitionbot.dump"
    done = petitionbot(tmp_path, database_url, "db", "backup", str(dump))
    assert done.returncode != 0
    [line] = [ln.strip() for ln in done.stderr.splitlines() if ln.strip().startswith("pg_dump")]
    subprocess.run(shlex.split(line), check=True, timeout=120)  # exactly as printed

    restored_name = f"petitionbot_restore_{uuid.uuid4().hex[:8]}"
    server = make_url(PG_URL)
    host = ["--host", server.host or "127.0.0.1", "--port", str(server.port or 5432)]
    subprocess.run(["createdb", *host, restored_name], check=True, timeout=60)
    try:
        # docs/deploy.md: pg_restore into an empty database.
        subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", *host,
                        "--dbname", restored_name, str(dump)], check=True, timeout=120)
        restored = make_engine(server.set(database=restored_name)
                               .render_as_string(hide_password=False))
        try:
            assert pending(restored) == []
            assert contents(restored) == before
        finally:
            restored.dispose()
    finally:
        subprocess.run(["dropdb", *host, "--if-exists", "--force", restored_name], check=True,
                       timeout=60)
