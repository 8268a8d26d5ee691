"""Event receivers in the staff API (DESIGN §9, issue #16 point 3): an admin subscribes a
receiver and is shown its secret once, pings it, sends its parked deliveries again and
removes it, on the console's own code (bot.shell.event_receivers): the same rules (https,
or http to a host in `[api] http_webhook_hosts`, which the suite sets to 127.0.0.1) and
the same audit entries. Every answer is held to the API's OpenAPI document
(api_helpers.call)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.config import ConfigError, load_config
from bot.shell import event_receivers, events, retention
from models import AuditEntry, Event, EventDelivery, Receiver
from models.db import is_postgres
from tests.integration.api_helpers import call, issue_tokens
from tests.integration.console_helpers import add_people, email_of
from tests.integration.writer_lock import deleted_per_transaction, writer_held
from webhooks.runtime import Runtime

CRM = "https://crm.example.org/petitionbot?key=abc"
LOOPBACK = "http://127.0.0.1:8080/events"
MOMENT = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def tokens(sessions: sessionmaker[Session], app: Flask) -> dict[str, str]:
    runtime: Runtime = app.extensions["petitionbot"]
    runtime.service.clock = lambda: MOMENT
    return issue_tokens(sessions, add_people(sessions))


def subscribe(client: FlaskClient, token: str, url: str = CRM,
              types: Any = ("signature.created", "supporter.erased")) -> Any:
    return call(client, "POST", "/api/v1/webhooks", token,
                {"url": url, "events": list(types) if isinstance(types, tuple) else types})


def added(client: FlaskClient, token: str, url: str = CRM,
          types: tuple[str, ...] = events.TYPES) -> int:
    response = subscribe(client, token, url, types)
    assert response.status_code == 201, response.get_json()
    made: int = response.get_json()["id"]
    return made


def happened(sessions: sessionmaker[Session], type_: str, supporter: int) -> str:
    """An event, recorded as the code that makes it does: for every receiver that asked."""
    with sessions.begin() as session:
        found = events.record(session.connection(), type_, {"supporter": supporter},
                              supporter, MOMENT)
    assert found is not None
    return found


def deliveries(sessions: sessionmaker[Session]) -> list[tuple[int, str, str]]:
    """(receiver, event id, status) of every delivery, in the order they were made."""
    with sessions() as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            select(EventDelivery.receiver_id, Event.public_id, EventDelivery.status)
            .join(Event, Event.id == EventDelivery.event_id).order_by(EventDelivery.id))]


def park(sessions: sessionmaker[Session], receiver: int) -> list[int]:
    """Park every delivery of `receiver`, as the worker does after a day of failures."""
    with sessions.begin() as session:
        session.execute(update(EventDelivery).where(EventDelivery.receiver_id == receiver)
                        .values(status="failed", attempts=17, last_answer="HTTP 503",
                                failed_at=MOMENT - dt.timedelta(hours=1)))
        return list(session.scalars(select(EventDelivery.id).where(
            EventDelivery.receiver_id == receiver).order_by(EventDelivery.id)))


def audit(sessions: sessionmaker[Session], action: str) -> list[tuple[str, str | None, Any]]:
    with sessions() as session:
        return [(e.actor, e.target, e.detail) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def receivers_held(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Receiver)) or 0


def settle_as(sessions: sessionmaker[Session], public_id: str, receiver: int,
              status: str) -> None:
    with sessions.begin() as session:
        session.execute(update(EventDelivery).where(
            EventDelivery.receiver_id == receiver,
            EventDelivery.event_id == select(Event.id).where(
                Event.public_id == public_id).scalar_subquery()).values(status=status))


# Who may ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/webhooks"), ("POST", "/api/v1/webhooks"),
    ("GET", "/api/v1/webhooks/1"), ("DELETE", "/api/v1/webhooks/1"),
    ("POST", "/api/v1/webhooks/1/ping"), ("POST", "/api/v1/webhooks/1/retry")])
def test_only_an_admins_token_manages_receivers(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        method: str, path: str) -> None:
    receiver = added(client, tokens["admin"])
    assert receiver == 1
    body = {"url": CRM, "events": ["signature.created"]}
    assert call(client, method, path, None, body).status_code == 401
    for role in ("viewer", "editor"):
        refused = call(client, method, path, tokens[role], body)
        assert refused.status_code == 403, role
        assert "admin" in refused.get_json()["error"]
    assert receivers_held(sessions) == 1 and deliveries(sessions) == []


# Subscribing ------------------------------------------------------------------------------

def test_an_admin_subscribes_the_crm_and_sees_its_secret_only_once(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    response = subscribe(client, tokens["admin"], types=["supporter.erased",
                                                         "signature.created",
                                                         "signature.created"])
    assert response.status_code == 201
    made = response.get_json()
    assert set(made) == {"id", "secret"} and made["secret"].startswith("whsec_")
    assert response.headers["Location"].endswith(f"/api/v1/webhooks/{made['id']}")
    with sessions() as session:
        row = session.get(Receiver, made["id"])
        assert row is not None
        assert (row.url, row.events, row.secret, row.created_by) == (
            CRM, ["signature.created", "supporter.erased"], made["secret"], email_of("admin"))
    listed = call(client, "GET", "/api/v1/webhooks", tokens["admin"])
    one = call(client, "GET", f"/api/v1/webhooks/{made['id']}", tokens["admin"])
    for answer in (listed, one):
        assert answer.status_code == 200
        assert made["secret"] not in answer.get_data(as_text=True)
    [item] = listed.get_json()["items"]
    assert item == {**{k: v for k, v in one.get_json().items() if k != "failed"}}
    assert (item["id"], item["url"], item["events"], item["created_by"]) == (
        made["id"], CRM, ["signature.created", "supporter.erased"], email_of("admin"))
    assert item["deliveries"] == {"pending": 0, "claimed": 0, "delivered": 0, "failed": 0}
    assert (item["last_answer"], item["last_delivered_at"]) == (None, None)
    # Audited by id and host alone: a URL's query may itself be a key; never the secret.
    assert audit(sessions, "receiver.add") == [
        (email_of("admin"), f"receiver:{made['id']}",
         {"host": "crm.example.org", "events": ["signature.created", "supporter.erased"]})]


@pytest.mark.parametrize("url", [
    "http://crm.example.org/hook",           # plain http to a host not listed
    "HTTP://crm.example.org/hook",
    "http://localhost:8080/hook",             # only 127.0.0.1 is listed in the suite
    "ftp://crm.example.org/hook", "crm.example.org/hook", "https://", "https:///path",
    "https://ops:hunter2@crm.example.org/hook", "https://ops@crm.example.org/hook",
    "https://crm.example.org:99999/hook", "https://crm.example.org:port/hook",
    "https://crm.example.org/a b", "https://crm.example.org/\u0000", "", "   ", 42, None,
    ["https://crm.example.org/hook"], "https://crm.example.org/" + "a" * 2000])
def test_a_receiver_must_be_https_or_an_allowed_http_host_and_hold_no_credentials(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        url: Any) -> None:
    refused = subscribe(client, tokens["admin"], url)
    assert refused.status_code == 400, url
    assert refused.get_json()["field"] == "url"
    assert refused.get_json()["error"].startswith("url: ")
    assert receivers_held(sessions) == 0 and audit(sessions, "receiver.add") == []


def test_plain_http_reaches_only_the_hosts_the_deployment_lists(
        client: FlaskClient, tokens: dict[str, str]) -> None:
    assert subscribe(client, tokens["admin"], LOOPBACK).status_code == 201
    assert subscribe(client, tokens["admin"], "http://127.0.0.1/").status_code == 201
    refused = subscribe(client, tokens["admin"], "http://127.0.0.2/")
    assert refused.status_code == 400
    assert "127.0.0.1" in refused.get_json()["error"]  # says which hosts may be http


@pytest.mark.parametrize("types", [[], None, "signature.created", ["ping"], ["signatures"],
                                   ["signature.created", "nope"], [1], [None], {"a": 1}])
def test_events_must_be_a_non_empty_list_of_known_types(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        types: Any) -> None:
    refused = subscribe(client, tokens["admin"], types=types)
    assert refused.status_code == 400, types
    assert refused.get_json()["field"] == "events"
    assert receivers_held(sessions) == 0


def test_a_missing_field_or_one_that_does_not_belong_is_named(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    for body, field in (({"events": ["signature.created"]}, "url"),
                        ({"url": CRM}, "events"),
                        ({"url": CRM, "events": ["signature.created"], "secret": "mine"},
                         "secret"),
                        (["not", "an", "object"], "body")):
        refused = call(client, "POST", "/api/v1/webhooks", tokens["admin"], body)
        assert refused.status_code == 400, body
        assert refused.get_json()["field"] == field, body
    assert receivers_held(sessions) == 0


def test_the_deployments_host_list_is_read_as_host_names(tmp_path: Path,
                                                         config_path: Path) -> None:
    shipped = config_path.read_text(encoding="utf-8")
    assert load_config(config_path).api.http_webhook_hosts == ("127.0.0.1",)
    for hosts, read in (('["CRM.internal", "[::1]"]', ("crm.internal", "::1")),
                        ("[]", ())):
        path = tmp_path / "hosts.toml"
        path.write_text(shipped.replace('http_webhook_hosts = ["127.0.0.1"]',
                                        f"http_webhook_hosts = {hosts}"), encoding="utf-8")
        assert load_config(path).api.http_webhook_hosts == read
    for wrong in ('["http://crm.internal"]', '["crm.internal:8080"]', '[""]', "[1]",
                  '"crm.internal"'):
        path.write_text(shipped.replace('http_webhook_hosts = ["127.0.0.1"]',
                                        f"http_webhook_hosts = {wrong}"), encoding="utf-8")
        with pytest.raises(ConfigError, match=r"api\.http_webhook_hosts"):
            load_config(path)


# Ping -------------------------------------------------------------------------------------

def test_a_ping_is_recorded_for_that_receiver_alone(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    crm, other = added(client, tokens["admin"]), added(client, tokens["admin"], LOOPBACK)
    answer = call(client, "POST", f"/api/v1/webhooks/{crm}/ping", tokens["admin"])
    assert answer.status_code == 202
    event = answer.get_json()["event"]
    assert deliveries(sessions) == [(crm, event, "pending")]
    with sessions() as session:
        row = session.scalar(select(Event).where(Event.public_id == event))
        assert row is not None
        assert (row.type, row.data, row.supporter_id) == ("ping", {"receiver": crm}, None)
    assert audit(sessions, "receiver.ping") == [
        (email_of("admin"), f"receiver:{crm}", {"event": event})]
    assert other != crm
    assert call(client, "POST", "/api/v1/webhooks/99/ping", tokens["admin"]).status_code == 404


# Removing ---------------------------------------------------------------------------------

def test_removing_a_receiver_deletes_its_deliveries_and_the_events_only_it_awaited(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    crm = added(client, tokens["admin"], types=("signature.created",))
    mail = added(client, tokens["admin"], LOOPBACK, types=("signature.created",
                                                           "subscription.changed"))
    shared = happened(sessions, "signature.created", 7)
    theirs = happened(sessions, "subscription.changed", 7)
    mine = call(client, "POST", f"/api/v1/webhooks/{crm}/ping",
                tokens["admin"]).get_json()["event"]
    park(sessions, crm)
    removed = call(client, "DELETE", f"/api/v1/webhooks/{crm}", tokens["admin"])
    assert removed.status_code == 204 and removed.get_data() == b""
    assert deliveries(sessions) == [(mail, shared, "pending"), (mail, theirs, "pending")]
    with sessions() as session:
        assert set(session.scalars(select(Event.public_id))) == {shared, theirs}
        assert session.get(Receiver, crm) is None
    assert mine not in json.dumps(audit(sessions, "receiver.remove"))
    assert audit(sessions, "receiver.remove") == [
        (email_of("admin"), f"receiver:{crm}", {"host": "crm.example.org"})]
    assert call(client, "DELETE", f"/api/v1/webhooks/{crm}", tokens["admin"]).status_code == 404
    assert call(client, "GET", f"/api/v1/webhooks/{crm}", tokens["admin"]).status_code == 404
    # No event is made for it afterwards.
    later = happened(sessions, "signature.created", 8)
    assert deliveries(sessions)[-1] == (mail, later, "pending") and len(deliveries(sessions)) == 3


def test_a_removed_receiver_is_stopped_at_once_and_its_history_goes_a_chunk_at_a_time(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long history is deleted in short transactions (so a signing's event never waits
    for all of it): here the request leaves it all to the worker's clearing, which deletes
    at most `chunk` deliveries per transaction, those still to be posted first, and the
    receiver's row last."""
    crm = added(client, tokens["admin"], types=("signature.created", "subscription.changed"))
    mail = added(client, tokens["admin"], LOOPBACK, types=("signature.created",))
    shared = [happened(sessions, "signature.created", s) for s in (1, 2, 3)]
    only_crm = [happened(sessions, "subscription.changed", s) for s in (1, 2, 3, 4)]
    for public_id in [*shared, *only_crm[1:]]:
        settle_as(sessions, public_id, crm, "delivered")
    monkeypatch.setattr(event_receivers, "REMOVE_WITHIN", 0.0)

    assert call(client, "DELETE", f"/api/v1/webhooks/{crm}", tokens["admin"]).status_code == 204
    # Stopped and hidden at once, its history still there.
    later = happened(sessions, "signature.created", 5)
    assert [r for r, _, _ in deliveries(sessions)].count(crm) == 7
    assert deliveries(sessions)[-1] == (mail, later, "pending")
    assert [r["id"] for r in call(client, "GET", "/api/v1/webhooks",
                                  tokens["admin"]).get_json()["items"]] == [mail]
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/ping"), ("POST", "/retry")):
        assert call(client, method, f"/api/v1/webhooks/{crm}{path}",
                    tokens["admin"]).status_code == 404

    with deleted_per_transaction(engine, "event_deliveries") as deleted:
        assert event_receivers.clear_removed(sessions, chunk=2) is True
    assert max(deleted) == 2 and sum(deleted) == 7 and len([n for n in deleted if n]) == 4
    assert deliveries(sessions) == [(mail, e, "pending") for e in [*shared, later]]
    with sessions() as session:
        assert set(session.scalars(select(Event.public_id))) == {*shared, later}
        assert session.get(Receiver, crm) is None
    assert event_receivers.clear_removed(sessions) is True  # nothing left: nothing done


def test_the_workers_daily_thread_finishes_a_removal_the_request_left(
        app: Flask, client: FlaskClient, tokens: dict[str, str],
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    crm = added(client, tokens["admin"])
    happened(sessions, "signature.created", 1)
    monkeypatch.setattr(event_receivers, "REMOVE_WITHIN", 0.0)
    call(client, "DELETE", f"/api/v1/webhooks/{crm}", tokens["admin"])
    assert receivers_held(sessions) == 1 and len(deliveries(sessions)) == 1
    runtime: Runtime = app.extensions["petitionbot"]
    retention.DailyRetention(runtime.config, sessions, clock=lambda: MOMENT).check()
    assert receivers_held(sessions) == 0 and deliveries(sessions) == []


def test_the_deliveries_still_to_be_posted_go_first(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """So the worker soon stops posting to a receiver being removed."""
    crm = added(client, tokens["admin"])
    made = [happened(sessions, "signature.created", s) for s in (1, 2, 3, 4)]
    for public_id in made[:3]:
        settle_as(sessions, public_id, crm, "delivered")
    monkeypatch.setattr(event_receivers, "REMOVE_WITHIN", 0.0)
    call(client, "DELETE", f"/api/v1/webhooks/{crm}", tokens["admin"])
    assert event_receivers.clear_removed(sessions, until=0.0) is False  # already past
    assert len(deliveries(sessions)) == 4
    with sessions.begin() as session:
        assert event_receivers._clear_chunk(session, crm, 1) == 1
    assert [s for _, _, s in deliveries(sessions)] == ["delivered"] * 3


def test_a_signing_waits_for_no_clearing_of_a_removed_receiver(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: while a chunk of a removed receiver's history is being deleted (its
    transaction open, its locks held), a signing records its event for the other
    receivers without waiting. (On SQLite one writer at a time is the rule: each chunk is
    short, as the test above shows.)"""
    if not is_postgres(engine):
        pytest.skip("row locks are PostgreSQL's")
    crm = added(client, tokens["admin"])
    added(client, tokens["admin"], LOOPBACK)
    for supporter in (1, 2, 3):
        happened(sessions, "signature.created", supporter)
    monkeypatch.setattr(event_receivers, "REMOVE_WITHIN", 0.0)
    assert call(client, "DELETE", f"/api/v1/webhooks/{crm}", tokens["admin"]).status_code == 204
    with sessions.begin() as clearing:
        assert event_receivers._clear_chunk(clearing, crm, 2) == 2
        with engine.connect() as signing, signing.begin():
            signing.execute(text("SET LOCAL lock_timeout = '5s'"))  # else: a hang, not a failure
            assert events.record(signing, events.SIGNATURE_CREATED, {"supporter": 4}, 4,
                                 MOMENT) is not None
    assert event_receivers.clear_removed(sessions) is True
    assert receivers_held(sessions) == 1


# Sending parked deliveries again ----------------------------------------------------------

def test_parked_deliveries_are_listed_and_sent_again_one_or_all(
        app: Flask, client: FlaskClient, tokens: dict[str, str],
        sessions: sessionmaker[Session]) -> None:
    crm, mail = added(client, tokens["admin"]), added(client, tokens["admin"], LOOPBACK)
    made = [happened(sessions, "signature.created", s) for s in (1, 2, 3)]
    first, second, third = park(sessions, crm)
    [theirs, *_] = park(sessions, mail)
    shown = call(client, "GET", f"/api/v1/webhooks/{crm}", tokens["admin"]).get_json()
    assert shown["deliveries"] == {"pending": 0, "claimed": 0, "delivered": 0, "failed": 3}
    assert shown["last_answer"] == "HTTP 503"
    assert [(p["id"], p["event"], p["type"], p["attempts"], p["last_answer"])
            for p in shown["failed"]] == [
        (d, e, "signature.created", 17, "HTTP 503")
        for d, e in zip((first, second, third), made, strict=True)]

    later = MOMENT + dt.timedelta(minutes=5)
    runtime: Runtime = app.extensions["petitionbot"]
    runtime.service.clock = lambda: later
    one = call(client, "POST", f"/api/v1/webhooks/{crm}/retry", tokens["admin"],
               {"deliveries": [second, theirs]})  # another receiver's is passed over
    assert one.status_code == 200 and one.get_json() == {"sent_again": 1, "passed_over": 0}
    rest = call(client, "POST", f"/api/v1/webhooks/{crm}/retry", tokens["admin"])
    assert rest.get_json() == {"sent_again": 2, "passed_over": 0}
    assert call(client, "POST", f"/api/v1/webhooks/{crm}/retry",
                tokens["admin"]).get_json() == {"sent_again": 0, "passed_over": 0}
    with sessions() as session:
        rows = session.scalars(select(EventDelivery).where(
            EventDelivery.receiver_id == crm).order_by(EventDelivery.id)).all()
        assert [(r.status, r.attempts, r.failed_at, r.last_answer) for r in rows] == [
            ("pending", 0, None, "HTTP 503")] * 3
        assert all(r.next_attempt_at == later for r in rows)
        assert session.get(EventDelivery, theirs).status == "failed"  # type: ignore[union-attr]
    assert audit(sessions, "receiver.retry") == [
        (email_of("admin"), f"receiver:{crm}", {"deliveries": 1}),
        (email_of("admin"), f"receiver:{crm}", {"deliveries": 2})]
    assert call(client, "POST", "/api/v1/webhooks/99/retry", tokens["admin"]).status_code == 404


@pytest.mark.parametrize("body", [{"deliveries": "all"}, {"deliveries": [0]},
                                  {"deliveries": [True]}, {"deliveries": ["1"]},
                                  {"deliveries": [2**63]}, {"deliveries": list(range(1, 1002))},
                                  {"all": True}, ["not", "an", "object"]])
def test_a_retry_naming_no_delivery_ids_is_refused_and_sends_nothing_again(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        body: Any) -> None:
    crm = added(client, tokens["admin"])
    happened(sessions, "signature.created", 1)
    park(sessions, crm)
    refused = call(client, "POST", f"/api/v1/webhooks/{crm}/retry", tokens["admin"], body)
    assert refused.status_code == 400
    assert refused.get_json()["field"] in ("deliveries", "all", "body")
    assert deliveries(sessions)[0][2] == "failed"


def test_a_parked_delivery_a_later_one_overtook_is_not_sent_again(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    """Amira's signature.created was parked; since then her erasure reached the CRM. Sent
    again, it would arrive after supporter.erased: it is passed over, and said so."""
    crm = added(client, tokens["admin"])
    amira = happened(sessions, "signature.created", 7)          # overtaken: delivered since
    ben = happened(sessions, "signature.created", 8)            # overtaken: being posted
    cai = happened(sessions, "signature.created", 9)            # a later one still waits
    ping = call(client, "POST", f"/api/v1/webhooks/{crm}/ping",
                tokens["admin"]).get_json()["event"]            # no supporter: no order
    parked = dict(zip((amira, ben, cai, ping), park(sessions, crm), strict=True))
    settle_as(sessions, happened(sessions, "supporter.erased", 7), crm, "delivered")
    settle_as(sessions, happened(sessions, "supporter.erased", 8), crm, "claimed")
    happened(sessions, "supporter.erased", 9)

    shown = call(client, "GET", f"/api/v1/webhooks/{crm}", tokens["admin"]).get_json()
    assert {p["event"]: p["overtaken"] for p in shown["failed"]} == {
        amira: True, ben: True, cai: False, ping: False}
    one = call(client, "POST", f"/api/v1/webhooks/{crm}/retry", tokens["admin"],
               {"deliveries": [parked[amira]]})
    assert one.get_json() == {"sent_again": 0, "passed_over": 1}
    every = call(client, "POST", f"/api/v1/webhooks/{crm}/retry", tokens["admin"])
    assert every.get_json() == {"sent_again": 2, "passed_over": 2}
    status = {e: s for r, e, s in deliveries(sessions) if r == crm}
    assert [status[e] for e in (amira, ben, cai, ping)] == [
        "failed", "failed", "pending", "pending"]
    assert audit(sessions, "receiver.retry") == [
        (email_of("admin"), f"receiver:{crm}", {"deliveries": 2, "passed_over": 2})]


def test_receivers_are_read_while_a_writer_holds_the_database(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session],
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing receivers counts every delivery (a million, in time): it reads on
    models.db.long_read, so it neither takes SQLite's writer lock nor waits for it. (The
    writer is held around the reading alone: the request's token check writes.)"""
    crm = added(client, tokens["admin"])
    for supporter in (1, 2, 3):
        happened(sessions, "signature.created", supporter)
    park(sessions, crm)
    for name in ("receivers", "receiver"):
        read = getattr(event_receivers, name)

        def held(*args: Any, read: Any = read, **kwargs: Any) -> Any:
            with writer_held(engine):
                return read(*args, **kwargs)

        monkeypatch.setattr(event_receivers, name, held)
    listed = call(client, "GET", "/api/v1/webhooks", tokens["admin"])
    one = call(client, "GET", f"/api/v1/webhooks/{crm}", tokens["admin"])
    assert listed.status_code == 200 and one.status_code == 200
    assert listed.get_json()["items"][0]["deliveries"]["failed"] == 3
    assert len(one.get_json()["failed"]) == 3
