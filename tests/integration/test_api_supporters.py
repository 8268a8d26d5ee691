"""Supporters in the staff API (DESIGN §9, issue #16 point 2): admins find a person by any
form of their number, export what we hold (the console's export.json, the same text) and
erase them, on the console's own code: the same rules, the same audit entries in the
token's staff member's name. Every answer is held to the API's OpenAPI document
(api_helpers.call)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models import AuditEntry, ConsentRecord, Identity, Signature, Subscription, Supporter
from tests.integration.api_helpers import API, call, issue_tokens
from tests.integration.console_helpers import Browser, add_people, email_of, signer
from tests.integration.twilio_helpers import Texter
from webhooks.runtime import Runtime

AMIRA, BEN, NOBODY = "+447700900123", "+447700900456", "+447700900999"


@pytest.fixture
def tokens(sessions: sessionmaker[Session], app: Flask) -> dict[str, str]:
    return issue_tokens(sessions, add_people(sessions))


def id_of(sessions: sessionmaker[Session], phone: str) -> int:
    with sessions() as session:
        found = session.scalar(select(Supporter.id).where(Supporter.phone == phone))
    assert found is not None
    return found


def find(client: FlaskClient, token: str, phone: str) -> Any:
    return call(client, "GET", f"/api/v1/supporters?phone={quote(phone)}", token)


def audit(sessions: sessionmaker[Session], action: str) -> list[tuple[str, str | None, Any]]:
    """(actor, target, detail) of every audit entry for `action`, oldest first."""
    with sessions() as session:
        return [(e.actor, e.target, e.detail) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def counts(client: FlaskClient) -> dict[str, Any]:
    found: dict[str, Any] = client.get("/api/petitions/sirt", base_url=API).get_json()["counts"]
    return found


def runtime_of(app: Flask) -> Runtime:
    found: Runtime = app.extensions["petitionbot"]
    return found


# Finding a person -------------------------------------------------------------------------

def test_an_admin_finds_amira_by_any_form_of_her_number_as_her_console_page_shows_her(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA", updates="YES")
    Texter(client, AMIRA, "whatsapp").says("Hello")  # the same person on WhatsApp
    amira = id_of(sessions, AMIRA)
    for form in ("07700 900123", "+44 7700 900123", "0044 7700 900123", "(07700) 900-123"):
        response = find(client, tokens["admin"], form)
        assert response.status_code == 200, form
        assert response.get_json()["phone"] == AMIRA
        assert [p["id"] for p in response.get_json()["items"]] == [amira], form
    [person] = response.get_json()["items"]
    assert (person["phone"], person["masked"]) == (AMIRA, "+4477******23")
    assert {(c["channel"], c["address"]) for c in person["channels"]} == {
        ("sms", AMIRA), ("whatsapp", AMIRA)}
    [signature] = person["signatures"]
    assert (signature["petition"], signature["name"], signature["postcode"]) == (
        "sirt", "Amira Khan", "EH1 1AA")
    assert [(s["petition"], s["channel"]) for s in person["subscriptions"]] == [("sirt", "sms")]
    assert [(c["purpose"], c["action"]) for c in person["consent_history"]] == [
        ("sign", "granted"), ("updates", "granted")]
    # Each lookup opened her record, as her console page does: audited in the token's name.
    assert audit(sessions, "supporter.view") == [
        (email_of("admin"), f"supporter:{amira}", None)] * 4


def test_a_number_nobody_has_is_an_empty_list_and_opens_no_record(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA")
    response = find(client, tokens["admin"], NOBODY)
    assert response.status_code == 200
    assert response.get_json() == {"phone": NOBODY, "items": []}
    assert audit(sessions, "supporter.view") == []


@pytest.mark.parametrize("path", ["/api/v1/supporters", "/api/v1/supporters?phone=",
                                  "/api/v1/supporters?phone=%20%20",
                                  "/api/v1/supporters?phone=not-a-number",
                                  "/api/v1/supporters?phone=123",
                                  f"/api/v1/supporters?phone={'7' * 40}"])
def test_no_phone_or_not_a_phone_number_is_a_400_naming_the_field(
        client: FlaskClient, tokens: dict[str, str], path: str) -> None:
    response = call(client, "GET", path, tokens["admin"])
    assert response.status_code == 400
    assert response.get_json()["field"] == "phone"


# The subject access export ----------------------------------------------------------------

def test_the_export_is_the_consoles_export_json_to_the_byte(
        app: Flask, client: FlaskClient, tokens: dict[str, str],
        sessions: sessionmaker[Session]) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA", updates="YES")
    Texter(client, AMIRA).says("Will you send me news of the hand-in?")
    amira = id_of(sessions, AMIRA)
    staff = Browser(app.test_client())
    assert staff.login(email_of("admin")).status_code == 302
    clock = runtime_of(app).service
    moment = dt.datetime.now(dt.UTC)
    clock.clock = lambda: moment  # both documents say when they were made: the same moment
    from_console = staff.post(f"/staff/supporters/{amira}/export.json")
    from_api = call(client, "GET", f"/api/v1/supporters/{amira}/export", tokens["admin"])
    assert from_console.status_code == from_api.status_code == 200
    assert from_api.mimetype == "application/json"
    assert from_api.get_data() == from_console.get_data()
    data = from_api.get_json()
    assert data["controller"] == "PLANETS Cancer Charity"
    assert data["generated_at"] == moment.isoformat()
    assert data["supporter"] == {"id": amira, "phone": AMIRA,
                                 "created_at": data["supporter"]["created_at"]}
    assert "Will you send me news of the hand-in?" in [
        m["text"] for m in data["messages_received"]]
    # Audited alike, each in its own staff member's name (here the same admin).
    assert audit(sessions, "supporter.export") == [
        (email_of("admin"), f"supporter:{amira}", {"phone": "+4477******23"})] * 2


def test_an_unknown_supporter_is_a_404_to_export_and_to_erase(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA")
    unknown = id_of(sessions, AMIRA) + 1000
    assert call(client, "GET", f"/api/v1/supporters/{unknown}/export",
                tokens["admin"]).status_code == 404
    assert call(client, "POST", f"/api/v1/supporters/{unknown}/erase", tokens["admin"],
                {"confirm": "erase"}).status_code == 404
    assert call(client, "GET", f"/api/v1/supporters/{2**63}/export",  # beyond any id
                tokens["admin"]).status_code == 404
    assert audit(sessions, "supporter.export") == audit(sessions, "supporter.erase") == []


# Who may -----------------------------------------------------------------------------------

ENDPOINTS = [("GET", "/api/v1/supporters?phone=07700900123", None),
             ("GET", "/api/v1/supporters/{id}/export", None),
             ("POST", "/api/v1/supporters/{id}/erase", {"confirm": "erase"})]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_only_an_admins_token_reaches_personal_data(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        method: str, path: str, body: Any) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA")
    path = path.format(id=id_of(sessions, AMIRA))
    for token in (None, "pbt_not-a-real-token"):
        assert call(client, method, path, token, body).status_code == 401
    for role in ("viewer", "editor"):
        refused = call(client, method, path, tokens[role], body)
        assert refused.status_code == 403 and "admin" in refused.get_json()["error"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Supporter)) == 1
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action.like("supporter.%"))) == 0
    assert call(client, method, path, tokens["admin"], body).status_code == 200


# Erasure ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    (None, "confirm"), ({}, "confirm"), ({"confirm": "yes"}, "confirm"),
    ({"confirm": " erase"}, "confirm"), ({"confirm": True}, "confirm"),
    (["confirm", "erase"], "confirm"), ("erase", "confirm"),
    ({"confirm": "erase", "reason": "asked by phone"}, "reason")])
def test_an_erasure_without_its_confirmation_is_a_400_and_erases_nobody(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        body: Any, field: str) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA")
    amira = id_of(sessions, AMIRA)
    refused = call(client, "POST", f"/api/v1/supporters/{amira}/erase", tokens["admin"], body)
    assert refused.status_code == 400
    assert refused.get_json()["field"] == field
    assert counts(client)["here"] == 1
    assert call(client, "GET", f"/api/v1/supporters/{amira}/export",
                tokens["admin"]).status_code == 200
    assert audit(sessions, "supporter.erase") == []


def test_erasure_withdraws_the_signatures_and_keeps_only_a_stop_as_suppression(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA", updates="YES")
    ben = signer(client, BEN, "Ben Jones", "CF10 1AA")
    ben.says("STOP")
    people = {phone: id_of(sessions, phone) for phone in (AMIRA, BEN)}
    assert counts(client)["here"] == 2 and counts(client)["by_channel"]["sms"] == 2
    answers = {}
    for phone, person in people.items():
        erased = call(client, "POST", f"/api/v1/supporters/{person}/erase", tokens["admin"],
                      {"confirm": "erase"})
        assert erased.status_code == 200
        answers[phone] = erased.get_json()
    assert answers[AMIRA] == {"id": people[AMIRA], "erased": True,
                              "signatures_withdrawn": 1, "suppression_kept": 0}
    assert answers[BEN] == {"id": people[BEN], "erased": True,
                            "signatures_withdrawn": 1, "suppression_kept": 1}
    assert counts(client)["here"] == 0 and counts(client)["by_channel"]["sms"] == 0
    with sessions() as session:
        for model in (Supporter, Signature, Subscription, ConsentRecord):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
        kept = session.scalars(select(Identity)).one()  # Ben's STOP, and nothing else
        assert (kept.address, kept.supporter_id) == (BEN, None)
        assert kept.opted_out_at is not None and kept.last_inbound_at is None
    # Gone: no export, nobody found by either number.
    for phone, person in people.items():
        assert call(client, "GET", f"/api/v1/supporters/{person}/export",
                    tokens["admin"]).status_code == 404
        assert find(client, tokens["admin"], phone).get_json()["items"] == []
        assert call(client, "POST", f"/api/v1/supporters/{person}/erase", tokens["admin"],
                    {"confirm": "ERASE"}).status_code == 404
    # Audited as the console audits it, in the token's staff member's name, counts only.
    assert audit(sessions, "supporter.erase") == [
        (email_of("admin"), f"supporter:{people[AMIRA]}",
         {"phone": "+4477******23", "signatures": 1, "suppression_kept": 0}),
        (email_of("admin"), f"supporter:{people[BEN]}",
         {"phone": "+4477******56", "signatures": 1, "suppression_kept": 1})]
    assert ben.says("Hello?") == []  # Ben's number stays silenced until he says START
