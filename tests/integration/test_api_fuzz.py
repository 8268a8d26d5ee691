"""Schemathesis fuzzes every operation the staff API's own document lists (read from the app
at /api/v1/openapi.json, so an operation added tomorrow is fuzzed tomorrow), with an admin's
token and, more briefly, a viewer's, on a database holding a petition, an announcement
draft and a supporter's inbox conversation made here.

What must hold for every generated request, valid or not (half of the cases aim their path
at the objects made here, so they get past the 404s):
- never a 5xx (a 5xx means only "the database is unavailable, retry": DESIGN §8);
- the answer is one the operation documents, in its documented shape (status code, content
  type, headers, body schema: schemathesis' response checks);
- a refused request (4xx) changes nothing: every table's rows are the same after it as
  before, except what any request of a known token writes (its budget's hits, when the
  token was last used).

The generation is derandomised, so a run is repeatable on SQLite and PostgreSQL alike; the
number of cases each run made is printed and recorded as the test's `fuzz_cases` property.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from models import Base, InboxConversation
from tests.integration.api_helpers import API, call, issue_tokens
from tests.integration.console_helpers import add_people
from tests.integration.inbox_helpers import waiting

EXAMPLES = {"admin": 25, "viewer": 8}  # generated cases per operation
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
# Written by any request of a known token, whatever it asks: not a change it made.
WRITTEN_BY_EVERY_REQUEST = {"rate_windows": None, "api_tokens": {"last_used_at"}}
Snapshot = dict[str, list[tuple[Any, ...]]]


@pytest.fixture
def config_path(config_path: Path) -> Path:
    """The suite's config, with a request budget that the fuzzing does not run into."""
    text = config_path.read_text(encoding="utf-8")
    roomy = text.replace("requests_per_window = 600", "requests_per_window = 10000")
    assert roomy != text, "config.toml has [api] requests_per_window = 600"
    config_path.write_text(roomy, encoding="utf-8")
    return config_path


@pytest.fixture
def made(app: Flask, sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Tokens, and the objects the cases aim at: path parameter name -> value."""
    tokens = issue_tokens(sessions, add_people(sessions))
    conversation = waiting(sessions, "+447700900555", "Can I sign for my mum too?")
    client = app.test_client()
    draft = client.post("/api/v1/announcements", base_url=API, json={
        "petition": "sirt", "text": "The petition is handed in on Friday."},
        headers={"Authorization": f"Bearer {tokens['editor']}"})
    assert draft.status_code == 201, draft.get_json()
    receiver = client.post("/api/v1/webhooks", base_url=API, json={
        "url": "http://127.0.0.1:9/crm", "events": ["signature.created"]},
        headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert receiver.status_code == 201, receiver.get_json()
    with sessions() as session:
        supporter = session.scalar(select(InboxConversation.supporter_id).where(
            InboxConversation.id == conversation))
    return {"tokens": tokens, "path": {
        "slug": "sirt", "announcement_id": draft.get_json()["id"],
        "conversation_id": conversation, "supporter_id": supporter,
        "receiver_id": receiver.get_json()["id"]}}


@pytest.fixture
def schema(app: Flask) -> schemathesis.BaseSchema:
    """The API as its document describes it, answered by the app itself (WSGI)."""
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app,
                                          config=schemathesis.Config())


def snapshot(engine: Engine) -> Snapshot:
    """Every table's rows (in a stable order), less what every request writes."""
    taken: Snapshot = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name in WRITTEN_BY_EVERY_REQUEST and \
                    WRITTEN_BY_EVERY_REQUEST[table.name] is None:
                continue
            skipped = WRITTEN_BY_EVERY_REQUEST.get(table.name) or set()
            columns = [c for c in table.columns if c.name not in skipped]
            rows = connection.execute(select(*columns)).all()
            taken[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return taken


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    return [name for name in before if before[name] != after.get(name)]


def operations(schema: schemathesis.BaseSchema) -> Iterator[Any]:
    for result in schema.get_all_operations():
        yield result.ok()


def strategy(operation: Any, path: dict[str, Any]) -> Any:
    """Cases for one operation, valid and not (negative cases break one part of the request:
    a parameter, the body, or the Authorization header); half with generated path
    parameters, half aimed at the objects made for the test."""
    ours = {p.name: path[p.name] for p in operation.path_parameters if p.name in path}
    return st.one_of(*(operation.as_strategy(generation_mode=mode, path_parameters=fixed)
                       for fixed in (None, ours)
                       for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)))


class Fuzz:
    """Runs one operation's cases, holding each answer to the rules above."""

    def __init__(self, engine: Engine, token: str) -> None:
        self.engine = engine
        self.headers = {"Authorization": f"Bearer {token}"}
        self.state = snapshot(engine)
        self.cases = 0
        self.statuses: dict[int, int] = {}

    def run(self, case: Case) -> None:
        self.cases += 1
        response = case.call(headers=self.headers)
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS, headers=self.headers)
        after = snapshot(self.engine)
        if 400 <= response.status_code < 500:
            assert not changed(self.state, after), (
                f"{case.operation.label} answered {response.status_code} "
                f"({response.text[:200]}) yet changed {changed(self.state, after)}")
        self.state = after


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_no_generated_request_is_a_5xx_off_its_schema_or_a_refusal_that_changed_something(
        role: str, schema: schemathesis.BaseSchema, made: dict[str, Any], engine: Engine,
        record_property: Any) -> None:
    fuzz = Fuzz(engine, made["tokens"][role])
    listed = list(operations(schema))
    assert {op.label for op in listed} >= {"GET /api/v1/petitions/{slug}",
                                           "POST /api/v1/announcements"}
    for operation in listed:
        @given(case=strategy(operation, made["path"]))
        @settings(max_examples=EXAMPLES[role], deadline=None, database=None,
                  derandomize=True, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def one(case: Case) -> None:
            fuzz.run(case)

        one()
    record_property("fuzz_cases", fuzz.cases)
    print(f"\nfuzzed {fuzz.cases} cases over {len(listed)} operations with a {role}'s "
          f"token; answers by status: {dict(sorted(fuzz.statuses.items()))}")


# What the fuzzing found, kept as plain tests ------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("GET", "/api/v1/announcements?petition=si%00rt", None, "petition"),
    ("POST", "/api/v1/announcements", {"petition": "sirt", "text": "Friday\u0000"}, "text"),
    ("POST", "/api/v1/announcements", {"petition": "si\u0000rt", "text": "News"}, "petition"),
    ("PATCH", "/api/v1/announcements/{announcement_id}", {"text": "\ud800"}, "text"),
    ("PATCH", "/api/v1/announcements/{announcement_id}", {"postcode_areas": ["L\u0000"]},
     "postcode_areas"),
])
def test_text_no_database_can_hold_is_a_400_naming_the_field_and_changes_nothing(
        method: str, path: str, body: Any, field: str, made: dict[str, Any],
        client: FlaskClient, engine: Engine) -> None:
    """PostgreSQL refused the NUL with a 500 (in a filter, a draft, an edit)."""
    before = snapshot(engine)
    response = call(client, method, path.format(**made["path"]), made["tokens"]["admin"], body)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(f"{field}: holds characters")
    assert not changed(before, snapshot(engine))


def test_an_id_out_of_range_is_a_404_not_a_405(made: dict[str, Any],
                                              client: FlaskClient) -> None:
    """Werkzeug answered PATCH /announcements/0 with 405 "GET allowed" (GET there is a 404)."""
    admin = made["tokens"]["admin"]
    for path in ("/api/v1/announcements/0", f"/api/v1/announcements/{2**63}"):
        assert call(client, "PATCH", path, admin, {"text": "News"}).status_code == 404
    post = call(client, "POST", f"/api/v1/announcements/{made['path']['announcement_id']}",
                admin, {})
    assert post.status_code == 405  # a path that is there, a method that is not
