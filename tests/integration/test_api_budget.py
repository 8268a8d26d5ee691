"""Each staff API token's request budget (config.toml `[api]`): past it the answer is 429
with Retry-After and nothing is done; the budget is per token, not per staff member, it
moves with the window, and it is exact when requests arrive at once on two web processes
(without Redis). Every answer is held to the API's OpenAPI document (api_helpers.call)."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.config import Api, ConfigError, load_config, parse_config
from bot.infra.settings import Settings
from bot.shell import api_tokens
from models import PetitionVersion, RateWindow, StaffUser
from tests.conftest import CONFIG, serving, together
from tests.integration.api_helpers import API, call, document, issue_tokens
from tests.integration.console_helpers import add_people, email_of

BUDGET = 3      # requests per token per window, in this file
WINDOW = 600    # seconds
PETITION = "/api/v1/petitions/sirt"


@pytest.fixture
def config_path(config_path: Path) -> Path:
    """The suite's config, with a budget small enough to spend in a test."""
    text = config_path.read_text(encoding="utf-8")
    small = text.replace("requests_per_window = 600", f"requests_per_window = {BUDGET}")
    assert small != text, "config.toml has [api] requests_per_window = 600"
    config_path.write_text(small, encoding="utf-8")
    return config_path


@pytest.fixture
def tokens(sessions: sessionmaker[Session], app: Flask) -> dict[str, str]:
    return issue_tokens(sessions, add_people(sessions))


@pytest.fixture
def clock(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Set the app's clock to so many seconds after a fixed start."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    service = app.extensions["petitionbot"].service

    def at(seconds: float) -> None:
        monkeypatch.setattr(service, "clock", lambda: start + dt.timedelta(seconds=seconds))

    at(0)
    return at


def test_the_fourth_request_in_the_window_is_refused_with_retry_after(
        client: FlaskClient, tokens: dict[str, str], clock: Callable[[float], None]) -> None:
    for second in range(BUDGET):
        clock(10 * second)
        assert call(client, "GET", PETITION, tokens["viewer"]).status_code == 200
    clock(30)
    refused = call(client, "GET", PETITION, tokens["viewer"])
    assert refused.status_code == 429
    assert f"its {BUDGET} requests" in refused.get_json()["error"]
    # The first request leaves the window 600 s after it was made.
    assert refused.headers["Retry-After"] == str(WINDOW - 30)


def test_the_window_moves_one_request_at_a_time(
        client: FlaskClient, tokens: dict[str, str], clock: Callable[[float], None]) -> None:
    for second in (0, 100, 200):
        clock(second)
        assert call(client, "GET", PETITION, tokens["editor"]).status_code == 200
    clock(599)
    assert call(client, "GET", PETITION, tokens["editor"]).headers["Retry-After"] == "1"
    clock(600.5)  # the first has left the window: one more fits, then no more
    assert call(client, "GET", PETITION, tokens["editor"]).status_code == 200
    assert call(client, "GET", PETITION, tokens["editor"]).headers["Retry-After"] == "100"
    clock(200 + WINDOW + 0.5)  # refusals were not counted: all but the last have left
    assert [call(client, "GET", PETITION, tokens["editor"]).status_code
            for _ in range(BUDGET)] == [200, 200, 429]


def test_each_token_has_its_own_budget_even_for_the_same_person(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        clock: Callable[[float], None]) -> None:
    with sessions.begin() as session:  # the admin's second integration
        admin = session.scalar(select(StaffUser).where(StaffUser.email == email_of("admin")))
        assert admin is not None
        other = api_tokens.issue(session, admin, "helpdesk", dt.datetime.now(dt.UTC)).secret
    for _ in range(BUDGET):
        assert call(client, "GET", PETITION, tokens["admin"]).status_code == 200
    assert call(client, "GET", PETITION, tokens["admin"]).status_code == 429
    assert call(client, "GET", PETITION, other).status_code == 200
    assert call(client, "GET", PETITION, tokens["viewer"]).status_code == 200


def test_a_refused_request_counts_and_a_429_changes_nothing(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        clock: Callable[[float], None]) -> None:
    """A viewer's PATCH is a 403, and it still counts: the budget bounds load."""
    for _ in range(BUDGET):
        assert call(client, "PATCH", PETITION, tokens["viewer"],
                    {"goal": 5}).status_code == 403
    assert call(client, "GET", PETITION, tokens["viewer"]).status_code == 429
    for _ in range(BUDGET - 1):
        assert call(client, "GET", PETITION, tokens["editor"]).status_code == 200
    assert call(client, "PATCH", PETITION, tokens["editor"], {"goal": 7}).status_code == 200
    saved = versions(sessions)
    assert call(client, "PATCH", PETITION, tokens["editor"], {"goal": 8}).status_code == 429
    assert versions(sessions) == saved
    assert call(client, "GET", PETITION, tokens["admin"]).get_json()["goal"] == 7


def versions(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(PetitionVersion)) or 0


@pytest.fixture
def second_process(settings: Settings) -> Iterator[Flask]:
    """Another web process's app on the same database (its own engine and caches)."""
    yield from serving(settings)


def test_requests_at_once_on_two_processes_are_counted_exactly(
        app: Flask, second_process: Flask, tokens: dict[str, str],
        sessions: sessionmaker[Session]) -> None:
    def request(n: int) -> Callable[[], int]:
        client = (app if n % 2 else second_process).test_client()
        return lambda: client.get(PETITION, base_url=API, headers={
            "Authorization": f"Bearer {tokens['admin']}"}).status_code

    answers = together([request(n) for n in range(12)])
    assert sorted(answers) == [200] * BUDGET + [429] * (12 - BUDGET)
    with sessions() as session:  # one row, for that token, holding no token
        rows = session.execute(select(RateWindow.key, RateWindow.hits)).all()
    assert [(key.split(":")[0], len(hits)) for key, hits in rows] == [("api-token", BUDGET)]
    assert tokens["admin"] not in rows[0].key


def test_every_guarded_operation_documents_the_429(app: Flask) -> None:
    doc = document(app)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            guarded = operation.get("x-role") != "public"
            assert ("429" in operation["responses"]) == guarded, f"{method} {path}"
    too_many = doc["components"]["responses"]["TooManyRequests"]
    assert "Retry-After" in too_many["headers"]
    assert f"{BUDGET} requests in any 10 minutes" in doc["info"]["description"]


def test_the_api_table_has_defaults_and_refuses_nonsense() -> None:
    assert load_config(CONFIG).api == Api(requests_per_window=600, window_seconds=600)
    with CONFIG.open("rb") as handle:
        shipped = tomllib.load(handle)
    without = {key: value for key, value in shipped.items() if key != "api"}
    assert parse_config(without, base=CONFIG.parent).api == Api()
    nonsense = {"requests_per_window": 0, "window_seconds": "600", "burst": 5}
    with pytest.raises(ConfigError) as refused:
        parse_config({**shipped, "api": nonsense}, base=CONFIG.parent)
    assert set(refused.value.errors) == {
        "api.requests_per_window: must be a positive whole number",
        "api.window_seconds: must be int", "api.burst: unknown key"}
    too_much = {"requests_per_window": 10_001, "window_seconds": 86_401}
    with pytest.raises(ConfigError) as refused:
        parse_config({**shipped, "api": too_much}, base=CONFIG.parent)
    assert set(refused.value.errors) == {"api.requests_per_window: at most 10,000",
                                         "api.window_seconds: at most 86400 (a day)"}
