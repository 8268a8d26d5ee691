"""Apply and check Alembic migrations (`petitionbot db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database up to `revision`."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def pending(engine: Engine) -> list[str]:
    """Revisions the database is behind head by (empty when up to date)."""
    script = ScriptDirectory.from_config(_config())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    behind = []
    for rev in script.walk_revisions():
        if rev.revision in current:
            break
        behind.append(rev.revision)
    return behind


def revise(engine: Engine, message: str) -> None:
    """Autogenerate a new revision from the models (for developers)."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
