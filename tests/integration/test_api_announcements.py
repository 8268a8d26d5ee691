"""Announcements through the staff API (DESIGN §9): an editor's script drafts and edits, an
admin other than the author approves, anyone with a token reads why it is not moving.
The rules are the console's (bot/shell/broadcast.py); a refused request changes nothing;
every answer is held to the OpenAPI document (tests/integration/api_helpers.py). The app's
clock is fixed: London, Saturday 5 December 2026, at noon unless a test says night.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.settings import Settings
from bot.shell import api_tokens, broadcast
from models import Announcement, AuditEntry, Delivery, StaffUser
from models.supporters import petition_id
from tests.integration.api_helpers import API, call, issue_tokens
from tests.integration.console_helpers import add_people, email_of
from tests.integration.test_announcement_status import NIGHT, NOON, TOMORROW_8, subscribe

TEMPLATE = "HX" + "d" * 32
NEWS = "The petition is handed in on Friday."


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A server with Twilio and WhatsApp but no SMS sender."""
    return dataclasses.replace(settings, twilio_sms_from="", twilio_messaging_service_sid="")


@pytest.fixture
def clock(app: Flask) -> Callable[[dt.datetime], None]:
    """Sets the app's clock (noon to begin with)."""

    def set_to(moment: dt.datetime) -> None:
        app.extensions["petitionbot"].service.clock = lambda: moment

    set_to(NOON)
    return set_to


@pytest.fixture
def tokens(app: Flask, sessions: sessionmaker[Session], clock: Any) -> dict[str, str]:
    """A token for each role, and "admin2" for the second admin: name -> token."""
    made = issue_tokens(sessions, add_people(sessions))
    with sessions.begin() as session:
        second = session.scalar(select(StaffUser).where(
            StaffUser.email == "admin2@planets.example"))
        assert second is not None
        made["admin2"] = api_tokens.issue(session, second, "second admin's script",
                                          NOON).secret
    return made


@pytest.fixture
def audience(app: Flask, sessions: sessionmaker[Session], service: Any) -> None:
    """Two SMS subscribers and one on WhatsApp who wrote an hour ago."""
    with sessions() as session:
        petition = petition_id(session, "sirt")
    assert petition is not None
    subscribe(sessions, petition, "sms", "+447700900401")
    subscribe(sessions, petition, "sms", "+447700900402")
    subscribe(sessions, petition, "whatsapp", "+447700900403", wrote=NOON - dt.timedelta(hours=1))


def post_draft(client: FlaskClient, token: str, **body: Any) -> dict[str, Any]:
    response = call(client, "POST", "/api/v1/announcements", token,
                    {"petition": "sirt", "text": NEWS, **body})
    assert response.status_code == 201, response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


def draft_digest(sessions: sessionmaker[Session], announcement_id: int) -> str:
    """The version an admin saw (what the console's approve form carries)."""
    with sessions() as session:
        found = session.get(Announcement, announcement_id)
        assert found is not None
        return broadcast.digest(found)


def announcements(sessions: sessionmaker[Session]) -> list[tuple[str, str, str | None]]:
    """(status, text, last editor) of every announcement, oldest first."""
    with sessions() as session:
        return [(a.status, a.text, a.edited_by) for a in session.scalars(
            select(Announcement).order_by(Announcement.id))]


def audited(sessions: sessionmaker[Session]) -> list[tuple[str, str, Any]]:
    with sessions() as session:
        return [(e.actor, e.action, (e.detail or {}).get("via")) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("announcement.%"))
            .order_by(AuditEntry.id))]


# Drafting ------------------------------------------------------------------------------------

def test_an_editors_script_drafts_an_announcement(
        client: FlaskClient, tokens: dict[str, str], audience: None,
        sessions: sessionmaker[Session]) -> None:
    response = call(client, "POST", "/api/v1/announcements", tokens["editor"], {
        "petition": "sirt", "text": NEWS, "channels": ["sms", "whatsapp"],
        "nations": [], "postcode_areas": [], "whatsapp_template": TEMPLATE})
    assert response.status_code == 201
    draft = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/announcements/{draft['id']}")
    assert (draft["status"], draft["petition"], draft["text"], draft["created_by"]) == (
        "draft", "sirt", NEWS, email_of("editor"))
    assert (draft["channels"], draft["whatsapp_template"], draft["total"]) == (
        ["sms", "whatsapp"], TEMPLATE, 0)
    codes = [e["code"] for e in draft["explanations"]]
    assert codes == ["awaiting_second_approval", "no_sms_sender"]
    assert draft["explanations"][1]["count"] == 2
    assert audited(sessions) == [(email_of("editor"), "announcement.create", "api")]


@pytest.mark.parametrize(("body", "field"), [
    ({"text": NEWS}, "petition"),
    ({"petition": "nope", "text": NEWS}, "petition"),
    ({"petition": "sirt"}, "text"),
    ({"petition": "sirt", "text": "   "}, "text"),
    ({"petition": "sirt", "text": "x" * 1201}, "text"),
    ({"petition": "sirt", "text": NEWS, "channels": ["fax"]}, "channels"),
    ({"petition": "sirt", "text": NEWS, "channels": "sms"}, "channels"),
    ({"petition": "sirt", "text": NEWS, "nations": ["atlantis"]}, "nations"),
    ({"petition": "sirt", "text": NEWS, "postcode_areas": ["EH1"]}, "postcode_areas"),
    ({"petition": "sirt", "text": NEWS, "whatsapp_template": "HX1"}, "whatsapp_template"),
    ({"petition": "sirt", "text": NEWS, "whatsapp_template": 7}, "whatsapp_template"),
    ({"petition": "sirt", "text": NEWS, "colour": "red"}, "colour"),
])
def test_a_draft_it_cannot_take_is_a_400_naming_the_field_and_nothing_is_saved(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        body: dict[str, Any], field: str) -> None:
    response = call(client, "POST", "/api/v1/announcements", tokens["editor"], body)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(f"{field}: ")
    assert announcements(sessions) == [] and audited(sessions) == []


def test_drafting_needs_an_editors_token(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    body = {"petition": "sirt", "text": NEWS}
    assert call(client, "POST", "/api/v1/announcements", None, body).status_code == 401
    assert call(client, "POST", "/api/v1/announcements", "pbt_unknown", body).status_code == 401
    refused = call(client, "POST", "/api/v1/announcements", tokens["viewer"], body)
    assert refused.status_code == 403 and "editor" in refused.get_json()["error"]
    not_json = client.post("/api/v1/announcements", data="text=hi", base_url=API,
                           headers={"Authorization": f"Bearer {tokens['editor']}"})
    assert not_json.status_code == 400
    assert announcements(sessions) == []


# Editing ---------------------------------------------------------------------------------------

def test_an_edit_changes_what_it_names_and_makes_its_author_the_last_editor(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    draft = post_draft(client, tokens["editor"], channels=["sms"])
    path = f"/api/v1/announcements/{draft['id']}"
    edited = call(client, "PATCH", path, tokens["admin"], {"text": "Friday, 11 am."})
    assert edited.status_code == 200
    shown = edited.get_json()
    assert (shown["text"], shown["channels"], shown["edited_by"]) == (
        "Friday, 11 am.", ["sms"], email_of("admin"))
    again = call(client, "PATCH", path, tokens["editor"], {"text": "Friday, 11 am."})
    assert again.get_json()["edited_by"] == email_of("admin")  # unchanged: no new editor
    assert audited(sessions) == [(email_of("editor"), "announcement.create", "api"),
                                 (email_of("admin"), "announcement.edit", "api")]


def test_a_refused_edit_changes_nothing(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    draft = post_draft(client, tokens["editor"])
    path = f"/api/v1/announcements/{draft['id']}"
    for body, status, field in (({"text": ""}, 400, "text"),
                                ({"nations": ["atlantis"]}, 400, "nations"),
                                ({"petition": "other"}, 400, "petition")):
        response = call(client, "PATCH", path, tokens["editor"], body)
        assert (response.status_code, response.get_json()["error"].split(":")[0]) == (
            status, field)
    assert call(client, "PATCH", path, tokens["viewer"], {"text": "x"}).status_code == 403
    assert call(client, "PATCH", "/api/v1/announcements/999", tokens["editor"],
                {"text": "x"}).status_code == 404
    assert announcements(sessions) == [("draft", NEWS, None)]

    assert call(client, "POST", f"{path}/approve", tokens["admin"]).status_code == 200
    late = call(client, "PATCH", path, tokens["editor"], {"text": "Too late."})
    assert late.status_code == 409 and "only a draft" in late.get_json()["error"]
    assert announcements(sessions) == [("sending", NEWS, None)]


# Approving ---------------------------------------------------------------------------------------

def test_nobody_approves_what_they_wrote_or_last_edited(
        client: FlaskClient, tokens: dict[str, str], audience: None,
        sessions: sessionmaker[Session]) -> None:
    mine = post_draft(client, tokens["admin"])
    refused = call(client, "POST", f"/api/v1/announcements/{mine['id']}/approve",
                   tokens["admin"])
    assert refused.status_code == 403
    assert refused.get_json()["error"] == ("you wrote this announcement, so another staff "
                                           "member must approve it")
    theirs = post_draft(client, tokens["editor"])
    call(client, "PATCH", f"/api/v1/announcements/{theirs['id']}", tokens["admin"],
         {"text": "Donate to this account instead."})
    refused = call(client, "POST", f"/api/v1/announcements/{theirs['id']}/approve",
                   tokens["admin"])
    assert refused.status_code == 403 and "you last edited" in refused.get_json()["error"]
    editor = call(client, "POST", f"/api/v1/announcements/{theirs['id']}/approve",
                  tokens["editor"])
    assert editor.status_code == 403 and "admin" in editor.get_json()["error"]
    assert [s for s, _, _ in announcements(sessions)] == ["draft", "draft"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_another_admin_approves_it_and_it_is_queued(
        client: FlaskClient, tokens: dict[str, str], audience: None,
        sessions: sessionmaker[Session]) -> None:
    draft = post_draft(client, tokens["editor"])
    path = f"/api/v1/announcements/{draft['id']}"
    approved = call(client, "POST", f"{path}/approve", tokens["admin2"],
                    {"seen": draft_digest(sessions, draft["id"])})
    assert approved.status_code == 200
    shown = approved.get_json()
    assert (shown["status"], shown["queued"], shown["approved_by"]) == (
        "sending", 3, "admin2@planets.example")
    assert (shown["warnings"], shown["starts_at"]) == ([], NOON.isoformat())
    assert shown["counts"]["pending"] == 3 and shown["total"] == 3
    again = call(client, "POST", f"{path}/approve", tokens["admin"])
    assert again.status_code == 409 and "not a draft" in again.get_json()["error"]
    assert call(client, "POST", "/api/v1/announcements/999/approve",
                tokens["admin"]).status_code == 404
    assert audited(sessions)[-1] == ("admin2@planets.example", "announcement.approve", "api")


def test_approving_a_version_changed_since_it_was_seen_is_a_conflict(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    draft = post_draft(client, tokens["editor"])
    path = f"/api/v1/announcements/{draft['id']}"
    refused = call(client, "POST", f"{path}/approve", tokens["admin2"], {"seen": "0" * 16})
    assert refused.status_code == 409 and "changed since" in refused.get_json()["error"]
    assert announcements(sessions) == [("draft", NEWS, None)]


def test_approving_for_a_time_schedules_it(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    draft = post_draft(client, tokens["editor"])
    path = f"/api/v1/announcements/{draft['id']}/approve"
    for at in ("2020-01-01T09:00:00+00:00", "next Tuesday", 7):
        refused = call(client, "POST", path, tokens["admin2"], {"at": at})
        assert refused.status_code == 400 and refused.get_json()["error"].startswith("at: ")
    assert call(client, "POST", path, tokens["admin2"], {"when": "now"}).status_code == 400
    assert announcements(sessions) == [("draft", NEWS, None)]
    scheduled = call(client, "POST", path, tokens["admin2"], {"at": "2026-12-07T10:00"})
    assert scheduled.status_code == 200
    shown = scheduled.get_json()
    assert (shown["status"], shown["queued"]) == ("scheduled", 0)
    assert shown["scheduled_at"] == "2026-12-07T10:00:00+00:00"  # London is on GMT then
    assert shown["explanations"][0]["code"] == "scheduled"


def test_approving_at_night_says_when_it_will_start_as_data(
        client: FlaskClient, tokens: dict[str, str], audience: None,
        clock: Callable[[dt.datetime], None]) -> None:
    draft = post_draft(client, tokens["editor"])
    clock(NIGHT)
    approved = call(client, "POST", f"/api/v1/announcements/{draft['id']}/approve",
                    tokens["admin2"])
    assert approved.status_code == 200
    shown = approved.get_json()
    assert shown["starts_at"] == TOMORROW_8.isoformat()
    assert shown["warnings"] == [{
        "code": "quiet_hours", "kind": "hold", "short": "quiet hours until 08:00",
        "until": TOMORROW_8.isoformat(),
        "text": "It is 22:40 in London, within quiet hours (21:00-08:00). If you approve now "
                "it will start sending at 08:00 tomorrow."}]
    assert shown["status"] == "sending" and shown["queued"] == 3


# Reading ----------------------------------------------------------------------------------------

def test_anyone_with_a_token_reads_why_an_announcement_is_not_moving(
        client: FlaskClient, tokens: dict[str, str], audience: None,
        clock: Callable[[dt.datetime], None]) -> None:
    draft = post_draft(client, tokens["editor"])
    clock(NIGHT)
    call(client, "POST", f"/api/v1/announcements/{draft['id']}/approve", tokens["admin2"])
    response = call(client, "GET", f"/api/v1/announcements/{draft['id']}", tokens["viewer"])
    assert response.status_code == 200
    shown = response.get_json()
    assert (shown["status"], shown["moving"], shown["counts"]["pending"]) == (
        "sending", False, 3)
    words = {e["code"]: e for e in shown["explanations"]}
    assert words["quiet_hours"]["text"] == ("It is 22:40 in London, within quiet hours "
                                            "(21:00-08:00): sending waits until 08:00 "
                                            "tomorrow.")
    assert words["quiet_hours"]["until"] == TOMORROW_8.isoformat()
    assert (words["no_sms_sender"]["count"], words["no_sms_sender"]["channel"]) == (2, "sms")
    assert "no_worker" in words
    assert call(client, "GET", f"/api/v1/announcements/{draft['id']}").status_code == 401
    assert call(client, "GET", "/api/v1/announcements/12345678901234567890",
                tokens["viewer"]).status_code == 404


def test_the_list_is_newest_first_and_filters_by_status_and_petition(
        client: FlaskClient, tokens: dict[str, str], audience: None) -> None:
    first = post_draft(client, tokens["editor"])
    second = post_draft(client, tokens["editor"], text="Second news.")
    call(client, "POST", f"/api/v1/announcements/{first['id']}/approve", tokens["admin2"])
    listed = call(client, "GET", "/api/v1/announcements", tokens["viewer"])
    assert listed.status_code == 200
    items = listed.get_json()["items"]
    assert [(i["id"], i["status"], i["total"]) for i in items] == [
        (second["id"], "draft", 0), (first["id"], "sending", 3)]
    drafts = call(client, "GET", "/api/v1/announcements?status=draft&petition=sirt",
                  tokens["viewer"]).get_json()["items"]
    assert [i["id"] for i in drafts] == [second["id"]]
    assert call(client, "GET", "/api/v1/announcements?petition=other",
                tokens["viewer"]).get_json() == {"items": []}
    for query in ("status=lost", "limit=0", "limit=201"):
        assert call(client, "GET", f"/api/v1/announcements?{query}",
                    tokens["viewer"]).status_code == 400
