"""Imports through the staff API (issue #16 point 4): admins send a CSV body and get the
same summary the console shows; every answer is held to the API's OpenAPI document
(api_helpers.conforms)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from bot.shell import imports
from models import AuditEntry, Signature, Suppression
from tests.integration.api_helpers import API, conforms, document, issue_tokens
from tests.integration.console_helpers import add_people
from tests.integration.test_imports import changed, csv_of
from tests.integration.test_imports import snapshot as everything

DAY = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)).isoformat()
NUMBERS = csv_of("phone", "07700 900123", "+44 7700 900456")
PAPER = csv_of("name,postcode,date,source", f"Rosa Parks,LS1 1UR,{DAY},Leeds march",
               f"Tom Hill,EH1 1AA,{DAY},Edinburgh stall")


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every row, but what every request of a known token writes (its budget, its last use)."""
    return everything(engine, skip=("rate_windows", "api_tokens"))


@pytest.fixture
def tokens(sessions: sessionmaker[Session], app: Flask) -> dict[str, str]:
    return issue_tokens(sessions, add_people(sessions))


def post(client: FlaskClient, path: str, token: str, body: bytes,
         content_type: str = "text/csv") -> TestResponse:
    response = client.open(path, method="POST", data=body, base_url=API,
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": content_type})
    conforms(client.application, "POST", path, response)
    return response


def test_an_admin_checks_then_imports_a_suppression_list(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        engine: Engine) -> None:
    before = snapshot(engine)
    dry = post(client, "/api/v1/imports/suppressions?dry_run=true&source=FPS", tokens["admin"],
               NUMBERS)
    assert dry.status_code == 200
    assert not changed(before, snapshot(engine))
    body: dict[str, Any] = dry.get_json()
    assert (body["dry_run"], body["kept"], body["id"], body["new"]) == (True, False, None, 2)
    done = post(client, "/api/v1/imports/suppressions?source=FPS&filename=fps.csv",
                tokens["admin"], NUMBERS)
    assert done.status_code == 201
    kept = done.get_json()
    assert (kept["kept"], kept["new"], kept["filename"], kept["sha256"]) == (
        True, 2, "fps.csv", body["sha256"])
    with sessions() as session:
        assert set(session.scalars(select(Suppression.source))) == {"FPS"}
        entry = session.scalar(select(AuditEntry).where(
            AuditEntry.action == "import.suppressions"))
    assert entry is not None and entry.actor == "admin@planets.example"
    assert entry.target == f"import:{kept['id']}" and "07700" not in str(entry.detail)
    again = post(client, "/api/v1/imports/suppressions", tokens["admin"], NUMBERS)
    assert again.status_code == 409 and "imported before" in again.get_json()["error"]


def test_paper_signatures_through_the_api(client: FlaskClient, tokens: dict[str, str],
                                          sessions: sessionmaker[Session]) -> None:
    response = post(client, "/api/v1/imports/signatures?petition=sirt", tokens["admin"], PAPER)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["numbers"] == {"first": 1, "last": 2}
    assert body["sources"] == {"Leeds march": 1, "Edinburgh stall": 1}
    counts = client.get("/api/petitions/sirt").get_json()["counts"]
    assert counts["by_channel"]["paper"] == 2 and counts["here"] == 2


def test_bad_rows_are_a_422_listing_them_by_line_and_nothing_is_kept(
        client: FlaskClient, tokens: dict[str, str], engine: Engine) -> None:
    before = snapshot(engine)
    for dry_run in ("false", "true"):
        response = post(client, f"/api/v1/imports/signatures?petition=sirt&dry_run={dry_run}",
                        tokens["admin"], PAPER + b"Bob Smith,NOWHERE,2020-01-01,Leeds\n")
        assert response.status_code == 422
        body = response.get_json()
        assert (body["bad_rows"], body["kept"]) == (1, False)
        assert body["errors"] == [{"line": 4, "error": "postcode: not a UK postcode; date: "
                                   "before the petition was created (17/03/2025)"}]
    assert not changed(before, snapshot(engine))


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/api/v1/imports/suppressions", b"\xff\xfe\x00", 400, "body"),
    ("/api/v1/imports/suppressions", b"email\nx@example.org\n", 400, "body"),
    ("/api/v1/imports/suppressions", b"", 400, "body"),
    ("/api/v1/imports/suppressions?dry_run=maybe", NUMBERS, 400, "dry_run"),
    ("/api/v1/imports/suppressions?source=" + "x" * 81, NUMBERS, 400, "source"),
    ("/api/v1/imports/signatures", PAPER, 400, "petition"),
    ("/api/v1/imports/signatures?petition=nope", PAPER, 404, None),
])
def test_what_cannot_be_imported_is_refused_and_changes_nothing(
        path: str, body: bytes, status: int, field: str | None, client: FlaskClient,
        tokens: dict[str, str], engine: Engine) -> None:
    before = snapshot(engine)
    response = post(client, path, tokens["admin"], body)
    assert response.status_code == status, response.get_json()
    assert response.get_json().get("field") == field
    assert not changed(before, snapshot(engine))


def test_a_body_larger_than_the_largest_file_is_a_413(
        client: FlaskClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        sessions: sessionmaker[Session]) -> None:
    monkeypatch.setattr(imports, "MAX_BYTES", 100)
    response = post(client, "/api/v1/imports/suppressions", tokens["admin"],
                    csv_of("phone", *(f"+4477009{n:05d}" for n in range(20))))
    assert response.status_code == 413
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_admins_import(role: str, client: FlaskClient, tokens: dict[str, str],
                            sessions: sessionmaker[Session]) -> None:
    assert post(client, "/api/v1/imports/suppressions", tokens[role], NUMBERS).status_code == 403
    assert post(client, "/api/v1/imports/signatures?petition=sirt", tokens[role],
                PAPER).status_code == 403
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 0


def test_both_operations_are_documented_with_a_csv_body(app: Flask) -> None:
    paths = document(app)["paths"]
    for path in ("/api/v1/imports/suppressions", "/api/v1/imports/signatures"):
        operation = paths[path]["post"]
        assert "text/csv" in operation["requestBody"]["content"]
        assert {"200", "201", "400", "409", "413", "422"} <= set(operation["responses"])
        assert operation["x-role"] == "admin"
    assert "404" in paths["/api/v1/imports/signatures"]["post"]["responses"]
