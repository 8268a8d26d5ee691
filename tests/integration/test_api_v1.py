"""The staff API at /api/v1 (DESIGN §9): bearer tokens that act as their staff member,
made and revoked with the CLI and in the console; roles that nest, JSON errors, no CSRF; a
petition's content and counts; the inbox's conversations listed, answered (the reply
reaches the outbox) and closed. Every answer is also held to the OpenAPI document
(tests/integration/api_helpers.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.core.outcomes import Job, Result, SendResult
from bot.entry.worker import BroadcastWorker
from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell import api_tokens
from models import AuditEntry, Delivery, Identity, StaffUser
from models.staff import ApiToken
from tests.integration.api_helpers import API, call, issue_tokens
from tests.integration.console_helpers import Browser, add_people, email_of, signer
from tests.integration.inbox_helpers import messages_of, waiting


@pytest.fixture
def staff_ids(sessions: sessionmaker[Session], app: Flask) -> dict[str, int]:
    return add_people(sessions)


@pytest.fixture
def tokens(sessions: sessionmaker[Session], staff_ids: dict[str, int]) -> dict[str, str]:
    """One token per role: role -> token."""
    return issue_tokens(sessions, staff_ids)


# Tokens ------------------------------------------------------------------------------------

def test_the_cli_prints_a_new_token_alone_on_the_last_line_and_keeps_only_its_hash(
        settings: Settings, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.entry.cli import main

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PETITIONBOT_CONFIG", settings.config_path)
    result = CliRunner().invoke(main, ["token", "create", "Editor@Planets.example",
                                       "--name", "CRM sync"])
    assert result.exit_code == 0, result.output
    token = result.output.rstrip("\n").splitlines()[-1]
    assert token.startswith(api_tokens.PREFIX) and " " not in token
    with sessions() as session:
        row = session.scalar(select(ApiToken))
        assert row is not None
        assert (row.name, row.staff_user_id) == ("CRM sync", staff_ids["editor"])
        assert row.token_hash == api_tokens.token_hash(token) != token
        assert session.scalar(select(AuditEntry.action).where(
            AuditEntry.action == "token.create")) == "token.create"
    assert call(client, "GET", "/api/v1/petitions/sirt", token).status_code == 200

    listed = CliRunner().invoke(main, ["token", "list", "editor@planets.example"])
    assert listed.exit_code == 0 and "CRM sync" in listed.output
    assert token not in listed.output
    revoked = CliRunner().invoke(main, ["token", "revoke", str(row.id)])
    assert revoked.exit_code == 0, revoked.output
    assert call(client, "GET", "/api/v1/petitions/sirt", token).status_code == 401
    assert "revoked" in CliRunner().invoke(main, ["token", "list"]).output
    with sessions() as session:
        audited = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(a.action, a.target) for a in audited] == [
        ("token.create", f"token:{row.id}"), ("token.revoke", f"token:{row.id}")]
    assert not [a for a in audited if token in repr(a.detail) or row.token_hash in
                repr(a.detail)]  # the audit log holds neither the token nor its hash

    unknown = CliRunner().invoke(main, ["token", "create", "nobody@planets.example"])
    assert unknown.exit_code != 0 and "no staff account" in unknown.output
    assert CliRunner().invoke(main, ["token", "revoke", "999"]).exit_code != 0


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer pbt_not-a-real-token",
    "Bearer not-even-the-prefix", "Bearer " + "x" * 5000])
def test_no_token_or_an_unknown_one_is_401_in_json(
        client: FlaskClient, tokens: dict[str, str], authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = call(client, "GET", "/api/v1/petitions/sirt", **headers)
    assert response.status_code == 401
    assert set(response.get_json()) == {"error"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Set-Cookie" not in response.headers


def test_a_revoked_token_or_one_of_an_inactive_account_is_401(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        staff_ids: dict[str, int]) -> None:
    assert call(client, "GET", "/api/v1/petitions/sirt", tokens["viewer"]).status_code == 200
    with sessions.begin() as session:
        row = session.scalar(select(ApiToken).where(
            ApiToken.token_hash == api_tokens.token_hash(tokens["viewer"])))
        assert row is not None
        assert api_tokens.revoke(session, row.id, dt.datetime.now(dt.UTC)) is not None
        session.execute(update(StaffUser).where(StaffUser.id == staff_ids["editor"])
                        .values(active=False))
    for role in ("viewer", "editor"):
        response = call(client, "GET", "/api/v1/petitions/sirt", tokens[role])
        assert response.status_code == 401, role
        assert "error" in response.get_json()
    assert call(client, "GET", "/api/v1/petitions/sirt", tokens["admin"]).status_code == 200


def test_a_token_records_when_it_was_last_used(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken).where(
            ApiToken.last_used_at.is_not(None))) == 0
    call(client, "GET", "/api/v1/petitions/sirt", tokens["viewer"])
    with sessions() as session:
        used = session.scalars(select(ApiToken.name).where(
            ApiToken.last_used_at.is_not(None))).all()
    assert used == ["viewer's script"]


def test_a_token_request_needs_no_csrf_token_and_opens_no_session(
        app: Flask, tokens: dict[str, str]) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    response = call(client, "POST", "/api/v1/conversations/1/close", tokens["editor"])
    assert response.status_code in (200, 404)  # not 400 "CSRF token missing"
    assert "Set-Cookie" not in response.headers


def test_staff_make_and_revoke_their_own_tokens_in_the_console(
        app: Flask, client: FlaskClient, staff_ids: dict[str, int],
        sessions: sessionmaker[Session]) -> None:
    app.config.update(WTF_CSRF_ENABLED=False)
    browser = Browser(app.test_client(), csrf=False)
    assert browser.login(email_of("viewer")).status_code == 302
    page = browser.get("/staff/account/tokens")
    assert page.status_code == 200 and "You have no tokens." in page.get_data(as_text=True)
    made = browser.post("/staff/account/tokens", {"name": "Reporting"})
    html = made.get_data(as_text=True)
    assert made.status_code == 200 and "shown only this once" in html
    token = html.split('<code class="secret" id="token-value">')[1].split("<")[0]
    assert token.startswith(api_tokens.PREFIX)
    assert call(client, "GET", "/api/v1/petitions/sirt", token).status_code == 200
    assert token not in browser.get("/staff/account/tokens").get_data(as_text=True)

    with sessions() as session:
        row = session.scalar(select(ApiToken))
        assert row is not None and row.staff_user_id == staff_ids["viewer"]
        other = api_tokens.issue(session, session.get(StaffUser, staff_ids["admin"]) or
                                 StaffUser(), "admin's", dt.datetime.now(dt.UTC))
        session.commit()
    # Someone else's token is not theirs to revoke.
    refused = browser.post(f"/staff/account/tokens/{other.id}/revoke", follow_redirects=True)
    assert f"You have no token {other.id}." in refused.get_data(as_text=True)
    revoked = browser.post(f"/staff/account/tokens/{row.id}/revoke")
    assert revoked.status_code == 303
    assert call(client, "GET", "/api/v1/petitions/sirt", token).status_code == 401
    assert call(client, "GET", "/api/v1/petitions/sirt", other.secret).status_code == 200
    with sessions() as session:
        audited = session.scalars(select(AuditEntry).where(
            AuditEntry.actor == email_of("viewer")).order_by(AuditEntry.id)).all()
    assert [a.action for a in audited][-2:] == ["token.create", "token.revoke"]
    assert not [a for a in audited if token in repr(a.detail)]


# Petitions ---------------------------------------------------------------------------------

def test_a_viewer_reads_a_petitions_content_and_the_public_counts(
        client: FlaskClient, tokens: dict[str, str]) -> None:
    signer(client, "+447700900123", "Amira Khan", "EH1 1AA")
    response = call(client, "GET", "/api/v1/petitions/sirt", tokens["viewer"])
    assert response.status_code == 200
    data = response.get_json()
    assert {"slug", "title", "summary", "text", "decision_makers", "goal", "external",
            "closed", "counts"} <= set(data)
    assert data["slug"] == "sirt" and data["text"] and data["decision_makers"]
    public = client.get("/api/petitions/sirt", base_url=API).get_json()
    assert data["counts"] == public["counts"]
    assert data["counts"]["here"] == 1
    missing = call(client, "GET", "/api/v1/petitions/nope", tokens["viewer"])
    assert missing.status_code == 404 and "error" in missing.get_json()
    # An unknown petition is only told apart from a known one with a token.
    assert call(client, "GET", "/api/v1/petitions/nope").status_code == 401


# Conversations -----------------------------------------------------------------------------

AMIRA, BEN, CARYS = "+447700900123", "+447700900456", "+447700900789"


@dataclass
class Recorder:
    """A provider that takes every message at once."""

    sent: list[Job] = field(default_factory=list)

    def send(self, job: Job) -> SendResult:
        self.sent.append(job)
        return SendResult(Result.SENT, provider_id=f"fake-{job.delivery_id}")


def send_outbox(config: Config, sessions: sessionmaker[Session]) -> dict[str, Recorder]:
    """Run a real worker until nothing is left to send; what each channel was given."""
    senders = {c: Recorder() for c in ("sms", "whatsapp", "telegram")}
    awake = dataclasses.replace(config, broadcast=dataclasses.replace(
        config.broadcast, quiet_hours=None))
    BroadcastWorker(awake, sessions, senders).run(until_idle=True)
    return senders


def test_an_editor_lists_open_conversations_flagged_first_with_their_messages(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    older = waiting(sessions, AMIRA, ["Is there a march?", "In London?"], minutes_ago=90)
    flagged = waiting(sessions, BEN, "I can't cope any more", flagged=True, minutes_ago=200)
    newer = waiting(sessions, "4242", "Thank you for this", channel="telegram", minutes_ago=1)
    response = call(client, "GET", "/api/v1/conversations?status=open", tokens["editor"])
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert [i["id"] for i in items] == [flagged, newer, older]
    first = next(i for i in items if i["id"] == older)
    assert {"id", "channel", "supporter", "messages"} <= set(first)
    assert first["channel"] == "sms" and first["flagged"] is False
    assert [(m["direction"], m["text"]) for m in first["messages"]] == [
        ("in", "Is there a march?"), ("in", "In London?")]
    assert {"id", "direction", "text", "at"} <= set(first["messages"][0])
    assert call(client, "GET", "/api/v1/conversations", tokens["admin"]).get_json() == {
        "items": items}
    closed = call(client, "GET", "/api/v1/conversations?status=closed", tokens["editor"])
    assert closed.get_json() == {"items": []}
    for bad in ("?status=all", "?limit=0", "?limit=100000"):
        refused = call(client, "GET", "/api/v1/conversations" + bad, tokens["editor"])
        assert refused.status_code == 400 and "error" in refused.get_json(), bad


def test_a_viewer_token_may_not_list_reply_or_close(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    conversation = waiting(sessions, AMIRA, "Is there a march?")
    for method, path, body in (
            ("GET", "/api/v1/conversations", None),
            ("POST", f"/api/v1/conversations/{conversation}/messages", {"text": "Yes"}),
            ("POST", f"/api/v1/conversations/{conversation}/close", None)):
        response = call(client, method, path, tokens["viewer"], body)
        assert response.status_code == 403, path
        assert "editor" in response.get_json()["error"]
    assert messages_of(sessions, conversation) == [("in", "Is there a march?")]


def test_an_editors_reply_reaches_the_outbox_and_the_supporter_on_their_channel(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        config: Config) -> None:
    conversation = waiting(sessions, AMIRA, "Is there a march?")
    response = call(client, "POST", f"/api/v1/conversations/{conversation}/messages",
                    tokens["editor"], {"text": "Yes \u2013 on Friday at 10am."})
    assert response.status_code == 201, response.get_json()
    made = response.get_json()
    assert (made["direction"], made["text"], made["delivery_state"]) == (
        "out", "Yes - on Friday at 10am.", "queued")  # SMS carries GSM-7 only
    with sessions() as session:
        delivery = session.scalar(select(Delivery).where(
            Delivery.inbox_message_id == made["id"]))
        assert delivery is not None
        assert (delivery.channel, delivery.status, delivery.text) == (
            "sms", "pending", "Yes - on Friday at 10am.")
        assert delivery.announcement_id is None  # a direct message, not an announcement
        audit = session.scalar(select(AuditEntry).where(AuditEntry.action == "inbox.reply"))
        assert audit is not None and audit.actor == email_of("editor")  # the token's user
    sent = send_outbox(config, sessions)
    assert [(j.address, j.text) for j in sent["sms"].sent] == [
        (AMIRA, "Yes - on Friday at 10am.")]
    listed = call(client, "GET", "/api/v1/conversations", tokens["editor"]).get_json()
    [item] = listed["items"]
    assert item["waiting_since"] is None and item["assigned_to"] == email_of("editor")
    assert [(m["direction"], m["delivery_state"]) for m in item["messages"]] == [
        ("in", None), ("out", "sent")]


def test_a_reply_the_channel_cannot_carry_is_409_with_the_reason_and_queues_nothing(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    late = waiting(sessions, CARYS, "Hello?", channel="whatsapp", wrote_hours_ago=30)
    stopped = waiting(sessions, BEN, "Why?")
    with sessions.begin() as session:
        session.execute(update(Identity).where(Identity.address == BEN)
                        .values(opted_out_at=dt.datetime.now(dt.UTC)))
    for conversation, words in ((late, "24-hour window"), (stopped, "STOP")):
        response = call(client, "POST", f"/api/v1/conversations/{conversation}/messages",
                        tokens["editor"], {"text": "We hear you."})
        assert response.status_code == 409
        assert words in response.get_json()["error"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_a_bad_reply_is_400_and_an_unknown_conversation_404(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    conversation = waiting(sessions, AMIRA, "Is there a march?")
    path = f"/api/v1/conversations/{conversation}/messages"
    for body in ({}, {"text": ""}, {"text": "   "}, {"text": 42}, ["text"], {"text": "x" * 2000},
                 {"text": "word " * 200}):  # the last: more than 3 SMS segments
        response = call(client, "POST", path, tokens["editor"], body)
        assert response.status_code == 400, body
        assert ("text" if isinstance(body, dict) else "JSON") in response.get_json()["error"]
    not_json = client.post(path, data="text=hi", base_url=API, headers={
        "Authorization": f"Bearer {tokens['editor']}"})
    assert not_json.status_code == 400 and "JSON" in not_json.get_json()["error"]
    for missing in ("999999", "9223372036854775807", "99999999999999999999", "0", "-1"):
        response = call(client, "POST", f"/api/v1/conversations/{missing}/messages",
                        tokens["editor"], {"text": "Hello"})
        assert response.status_code == 404, missing
        assert "error" in response.get_json()
    assert call(client, "POST", "/api/v1/conversations/999999/close",
                tokens["editor"]).status_code == 404
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_closing_a_conversation_moves_it_to_closed_and_replies_stop(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    conversation = waiting(sessions, AMIRA, "Thanks!")
    response = call(client, "POST", f"/api/v1/conversations/{conversation}/close",
                    tokens["admin"])
    assert response.status_code == 200
    assert response.get_json() == {"id": conversation, "status": "closed"}
    assert call(client, "GET", "/api/v1/conversations", tokens["editor"]).get_json() == {
        "items": []}
    closed = call(client, "GET", "/api/v1/conversations?status=closed", tokens["editor"])
    assert [i["id"] for i in closed.get_json()["items"]] == [conversation]
    again = call(client, "POST", f"/api/v1/conversations/{conversation}/messages",
                 tokens["editor"], {"text": "One more thing"})
    assert again.status_code == 409 and "closed" in again.get_json()["error"]
    with sessions() as session:
        assert session.scalar(select(AuditEntry.actor).where(
            AuditEntry.action == "inbox.close")) == email_of("admin")


def test_amiras_question_after_signing_is_answered_through_the_api(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        config: Config) -> None:
    amira = signer(client, AMIRA, "Amira Khan", "EH1 1AA")
    amira.says("Will you be handing it in at Downing Street? My mum would love to come")
    [item] = call(client, "GET", "/api/v1/conversations", tokens["editor"]).get_json()["items"]
    assert item["channel"] == "sms"
    assert "Downing Street" in item["messages"][-1]["text"] or any(
        "Downing Street" in m["text"] for m in item["messages"])
    response = call(client, "POST", f"/api/v1/conversations/{item['id']}/messages",
                    tokens["editor"], {"text": "Yes, on 12 March. Everyone is welcome."})
    assert response.status_code == 201
    sent = send_outbox(config, sessions)
    assert [(j.address, j.text) for j in sent["sms"].sent] == [
        (AMIRA, "Yes, on 12 March. Everyone is welcome.")]


def test_every_api_route_is_declared_with_its_role(app: Flask) -> None:
    """No API route escapes `route(rule, role)`; only the API's own description is public.
    (test_openapi proves over the url_map that each refuses a missing token or role.)"""
    from webhooks.api_v1 import ROLES

    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("api_v1.")]
    assert {r.endpoint for r in rules} == set(ROLES)
    assert set(ROLES.values()) <= {"viewer", "editor", "admin", "public"}
    assert [e for e, role in ROLES.items() if role == "public"] == ["api_v1.openapi"]
    assert {e: ROLES[e] for e in ("api_v1.petition", "api_v1.conversations", "api_v1.reply",
                                  "api_v1.close")} == {
        "api_v1.petition": "viewer", "api_v1.conversations": "editor",
        "api_v1.reply": "editor", "api_v1.close": "editor"}
