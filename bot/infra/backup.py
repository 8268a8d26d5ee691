"""`petitionbot db backup PATH`: a consistent copy of a SQLite database while it is in use.

SQLite's online backup API (sqlite3.Connection.backup) copies a snapshot: in WAL mode
readers do not block writers, so the bot keeps answering while it runs. The copy is
written beside PATH, checked, switched to a self-contained journal mode (no -wal file to
forget), made readable by its owner only (it holds personal data), then renamed onto PATH.

Restore: stop every process, remove the database's -wal and -shm files, copy the backup
over the database file, start again (docs/deploy.md).

PostgreSQL is backed up with its own tools: the command says how and exits non-zero.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class BackupError(Exception):
    pass


def backup_sqlite(database: Path, target: Path) -> int:
    """Copy `database` to `target` (replacing it atomically); return the size in bytes."""
    if not database.is_file():
        raise BackupError(f"no SQLite database at {database}")
    if target.exists() and target.resolve() == database.resolve():
        raise BackupError("the backup would overwrite the database itself")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise BackupError(f"no such folder: {folder}")
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=folder)
    os.close(handle)
    try:
        os.chmod(partial, 0o600)
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
            # The copy of a WAL database is in WAL mode too; make it one self-contained file.
            copy.execute("PRAGMA journal_mode=DELETE")
            verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"the copy failed its integrity check: {verdict}")
        finally:
            copy.close()
            source.close()
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
        _sync_folder(folder)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return target.stat().st_size


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pg_dump_command(database_url: str, target: str) -> str:
    """The pg_dump line that backs this PostgreSQL database up to `target` (no password:
    pg_dump takes it from ~/.pgpass or PGPASSWORD)."""
    given = make_url(database_url)
    url = URL.create("postgresql", username=given.username, host=given.host,
                     port=given.port, database=given.database, query=given.query)
    libpq = url.render_as_string(hide_password=False)
    return f"pg_dump --format=custom --file={shlex.quote(target)} {shlex.quote(libpq)}"
