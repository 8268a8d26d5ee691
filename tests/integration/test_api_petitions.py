"""Petitions in the staff API (DESIGN §9): GET for any token, PATCH for editors, on the
console's own code: a change is a new version, audited in the token's staff member's
name, used by the bot from the next message; a bad field is a 400 naming it, and nothing
changes. Every answer is held to the API's OpenAPI document (api_helpers.call)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.config import Config
from models import AuditEntry, PetitionVersion
from tests.integration.api_helpers import API, call, issue_tokens
from tests.integration.console_helpers import add_people, email_of
from tests.integration.twilio_helpers import Texter

NEW_SUMMARY = "NHS England funds SIRT for liver cancer but not for NET patients. Ask them " \
              "to fund it for everyone who needs it."


@pytest.fixture
def tokens(sessions: sessionmaker[Session], app: Flask) -> dict[str, str]:
    return issue_tokens(sessions, add_people(sessions))


def saved_versions(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(PetitionVersion)) or 0


def test_a_viewer_reads_the_live_content_as_design_9_gives_it(
        client: FlaskClient, tokens: dict[str, str], config: Config) -> None:
    response = call(client, "GET", "/api/v1/petitions/sirt", tokens["viewer"])
    assert response.status_code == 200
    data = response.get_json()
    sirt = config.petition("sirt")
    assert (data["slug"], data["title"], data["summary"], data["text"]) == (
        "sirt", sirt.title, sirt.summary, sirt.issue)
    assert data["decision_makers"] == ["NHS England"] and data["goal"] == 100_000
    assert data["external"] == [{"source": "Change.org", "count": 49_257, "as_of": None}]
    assert data["closed"] is False and data["closed_on"] is None and data["version"] == 0
    assert data["counts"] == client.get("/api/petitions/sirt", base_url=API).get_json()["counts"]
    listed = call(client, "GET", "/api/v1/petitions", tokens["viewer"]).get_json()
    assert listed == {"items": [{"slug": "sirt", "title": sirt.title, "closed": False}]}


def test_an_editor_changes_the_summary_and_the_next_message_uses_it(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    changed = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"],
                   {"summary": NEW_SUMMARY})
    assert changed.status_code == 200
    assert changed.get_json()["summary"] == NEW_SUMMARY and changed.get_json()["version"] == 2
    assert any(NEW_SUMMARY in reply for reply in Texter(client, "+447700900123").says("Hi"))
    with sessions() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "petition.edit"))
    assert entry is not None and entry.actor == email_of("editor")
    assert entry.detail is not None and entry.detail["changed"]["summary"]["after"] == NEW_SUMMARY


def test_an_admin_updates_the_change_org_count_and_the_public_json_follows(
        client: FlaskClient, tokens: dict[str, str]) -> None:
    changed = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["admin"], {
        "external": [{"source": "Change.org", "count": 52_400, "as_of": "2026-12-04"}]})
    assert changed.status_code == 200
    assert changed.get_json()["external"] == [
        {"source": "Change.org", "count": 52_400, "as_of": "2026-12-04"}]
    public = client.get("/api/petitions/sirt", base_url=API).get_json()
    assert public["counts"]["total"] == 52_400
    assert public["counts"]["external"] == [{"source": "Change.org", "count": 52_400}]


def test_closed_is_a_boolean_both_ways(client: FlaskClient, tokens: dict[str, str]) -> None:
    closed = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"],
                  {"closed": True}).get_json()
    assert closed["closed"] is True and closed["closed_on"]
    again = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"],
                 {"closed": True}).get_json()
    assert again["closed_on"] == closed["closed_on"] and again["version"] == closed["version"]
    reopened = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"],
                    {"closed": False}).get_json()
    assert reopened["closed"] is False and reopened["closed_on"] is None


def test_several_fields_change_in_one_version(client: FlaskClient, tokens: dict[str, str],
                                              sessions: sessionmaker[Session]) -> None:
    body = {"title": "Fund SIRT for NET patients", "text": "The whole issue, rewritten.",
            "decision_makers": ["NHS England", "The Secretary of State for Health"],
            "goal": 150_000}
    changed = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"], body)
    assert changed.status_code == 200
    data = changed.get_json()
    assert {key: data[key] for key in body} == body
    assert saved_versions(sessions) == 2  # config.toml's first, then this one


@pytest.mark.parametrize(("body", "field"), [
    ({"summary": "We\u2019re asking NHS England"}, "summary"),
    ({"summary": "x" * 201}, "summary"),
    ({"title": ""}, "title"),
    ({"title": 7}, "title"),
    ({"text": ""}, "text"),
    ({"text": "Fund it \U0001F389"}, "text"),
    ({"decision_makers": []}, "decision_makers"),
    ({"decision_makers": "NHS England"}, "decision_makers"),
    ({"goal": 0}, "goal"),
    ({"goal": "100000"}, "goal"),
    ({"goal": True}, "goal"),
    ({"external": [{"source": "Change.org", "count": -1}]}, "external"),
    ({"external": [{"source": "Change.org"}]}, "external"),
    ({"external": [{"source": "Change.org", "count": 5, "when": "today"}]}, "external"),
    ({"external": [{"source": "Change.org", "count": 5, "as_of": "05/12/2026"}]}, "external"),
    ({"external": {"source": "Change.org", "count": 5}}, "external"),
    ({"closed": "yes"}, "closed"),
    ({"closed": None}, "closed"),
    ({"organiser": "Someone else"}, "organiser"),
    ({"slug": "other"}, "slug"),
])
def test_a_bad_field_is_a_400_naming_it_and_nothing_changes(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        config: Config, body: dict[str, Any], field: str) -> None:
    refused = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"],
                   {"goal": 123_456, **body})
    assert refused.status_code == 400
    assert refused.get_json()["field"] == field and refused.get_json()["error"]
    assert saved_versions(sessions) == 0
    now = call(client, "GET", "/api/v1/petitions/sirt", tokens["viewer"]).get_json()
    assert now["goal"] == config.petition("sirt").goal and now["version"] == 0


def test_a_body_that_is_no_json_object_is_a_400(client: FlaskClient,
                                                tokens: dict[str, str]) -> None:
    refused = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"], ["summary"])
    assert refused.status_code == 400 and "JSON object" in refused.get_json()["error"]


def test_tokens_and_roles_are_checked_before_anything_else(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    body = {"summary": NEW_SUMMARY}
    assert call(client, "PATCH", "/api/v1/petitions/sirt", None, body).status_code == 401
    assert call(client, "PATCH", "/api/v1/petitions/sirt", "pbt_nope", body).status_code == 401
    assert call(client, "GET", "/api/v1/petitions/sirt").status_code == 401
    assert call(client, "GET", "/api/v1/petitions").status_code == 401
    refused = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["viewer"], body)
    assert refused.status_code == 403 and "editor" in refused.get_json()["error"]
    assert saved_versions(sessions) == 0


def test_an_unknown_petition_is_a_404(client: FlaskClient, tokens: dict[str, str]) -> None:
    assert call(client, "GET", "/api/v1/petitions/nope", tokens["viewer"]).status_code == 404
    missing = call(client, "PATCH", "/api/v1/petitions/nope", tokens["editor"], {"goal": 5})
    assert missing.status_code == 404 and "error" in missing.get_json()
