"""Shared fixtures: settings, a fresh database per test (SQLite, or PostgreSQL in a database
made for the run on the server TEST_DATABASE_URL names), the app and its clients, and a
guard that fails any test that tries to reach the internet."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from bot.infra.config import Config, load_config
from bot.infra.settings import Settings
from bot.shell.service import Service
from models import Base
from models.db import make_engine, make_sessions
from models.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config.toml"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_URL = "https://petition.example.org"
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
T = TypeVar("T")


class NetworkAccessError(BaseException):
    """A test tried to reach a host off this machine (BaseException: no `except` hides it)."""


def together(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run every job in its own thread, all released at once; results in order."""
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[], T]) -> T:
        barrier.wait(timeout=60)
        return job()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        return [future.result(timeout=120) for future in futures]


def _is_local(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if not _is_local(host):
            raise NetworkAccessError(f"test tried to reach {host!r}")
        return real_connect(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_local(host.decode() if isinstance(host, bytes) else host):
            raise NetworkAccessError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set TEST_DATABASE_URL (make test does)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database made for this run on the server TEST_DATABASE_URL names, migrated, and
    dropped after the run: the suite never empties or drops a database it did not create,
    so two runs on one server, or someone's own data there, are safe."""
    server = make_url(PG_URL)
    name = f"petitionbot_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database for this test."""
    if not PG_URL:
        url = f"sqlite:///{tmp_path / 'petitionbot.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    engine: Engine = request.getfixturevalue("pg_engine")
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """The suite's config.toml: the shipped one, except that admins sign in without
    two-factor sign-in, because nearly every test signs in as an admin with a password
    alone (tests/integration/test_colleagues.py tests the shipped rule), and that event
    receivers may be plain http on 127.0.0.1 (the loopback fakes). The petition's text is
    still read from the repository."""
    text = CONFIG.read_text(encoding="utf-8")
    suite = text.replace("admin_two_factor = true", "admin_two_factor = false").replace(
        'issue_file = "petitions/', f'issue_file = "{(ROOT / "petitions").as_posix()}/').replace(
        "http_webhook_hosts = []", 'http_webhook_hosts = ["127.0.0.1"]')
    assert suite.count("admin_two_factor = false") == 1, "config.toml has [console] two-factor"
    assert suite.count('http_webhook_hosts = ["127.0.0.1"]') == 1, \
        "config.toml has [api] http_webhook_hosts = []"
    path = tmp_path / "suite-config.toml"
    path.write_text(suite, encoding="utf-8")
    return path


@pytest.fixture
def settings(database_url: str, config_path: Path) -> Settings:
    return Settings(database_url=database_url, config_path=str(config_path),
                    public_base_url=PUBLIC_URL, secret_key="test-secret",
                    twilio_account_sid=TWILIO_SID, twilio_auth_token=TWILIO_TOKEN,
                    twilio_sms_from="+447700900000",
                    twilio_whatsapp_from="whatsapp:+447700900000")


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path)  # admins need no second step here: see config_path


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessions(engine)


@pytest.fixture
def service(config: Config, sessions: sessionmaker[Session]) -> Service:
    service = Service(config, sessions)
    service.sync_petitions()
    return service


def serving(settings: Settings) -> Iterator[Flask]:
    """A web process's app on `settings` (its own service, caches and connections)."""
    from webhooks import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["petitionbot"].engine.dispose()


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    yield from serving(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
