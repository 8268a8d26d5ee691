"""Event receivers in the console (admins): Sam adds the charity's CRM and copies its secret
from the one page that shows it, sends it a ping, sends parked deliveries again, and
removes it after a confirmation page. Viewers and editors are refused every page and
action; every form needs its CSRF token. The rules are the staff API's (one shell code
path), so they are tested there; here, that the console says them next to the field."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.shell import events
from models import AuditEntry, Event, EventDelivery, Receiver
from tests.integration.console_helpers import Browser, add_people, email_of

CRM = "https://crm.example.org/petitionbot"


@pytest.fixture
def people(app: Flask) -> dict[str, int]:
    return add_people(app.extensions["petitionbot"].sessions)


@pytest.fixture
def sessions(app: Flask) -> sessionmaker[Session]:
    made: sessionmaker[Session] = app.extensions["petitionbot"].sessions
    return made


def browser(app: Flask, role: str) -> Browser:
    who = Browser(app.test_client())
    assert who.login(email_of(role)).status_code in (302, 303)
    return who


def page(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def add(sam: Browser, url: str = CRM, types: tuple[str, ...] = ("signature.created",
                                                                "supporter.erased")) -> Any:
    return sam.post("/staff/receivers", {"url": url, "events": list(types)})


def the_receiver(sessions: sessionmaker[Session]) -> Receiver:
    with sessions() as session:
        return session.scalars(select(Receiver)).one()


def statuses(sessions: sessionmaker[Session]) -> list[tuple[int, str, str]]:
    """(receiver, event type, status) of every delivery, oldest first."""
    with sessions() as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            select(EventDelivery.receiver_id, Event.type, EventDelivery.status)
            .join(Event, Event.id == EventDelivery.event_id).order_by(EventDelivery.id))]


def actions(sessions: sessionmaker[Session]) -> list[tuple[str, str, str | None]]:
    with sessions() as session:
        return [(e.actor, e.action, e.target) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("receiver.%"))
            .order_by(AuditEntry.id))]


def parked(sessions: sessionmaker[Session], receiver: int, how_many: int) -> list[int]:
    """`how_many` signatures' events, parked for `receiver` after a day of failures."""
    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        for supporter in range(1, how_many + 1):
            events.record(session.connection(), events.SIGNATURE_CREATED,
                          {"supporter": supporter}, supporter, now)
        session.execute(update(EventDelivery).values(
            status="failed", attempts=17, last_answer="HTTP 502", failed_at=now))
        return list(session.scalars(select(EventDelivery.id).where(
            EventDelivery.receiver_id == receiver).order_by(EventDelivery.id)))


def test_sam_adds_the_crm_and_sees_its_secret_once(
        app: Flask, people: dict[str, int], sessions: sessionmaker[Session]) -> None:
    sam = browser(app, "admin")
    empty = sam.get("/staff/receivers")
    assert empty.status_code == 200 and "No receivers yet" in page(empty)
    assert 'href="/staff/receivers"' in page(sam.get("/staff/"))  # in the nav, for admins
    answer = add(sam)
    assert answer.status_code == 200
    row = the_receiver(sessions)
    assert (row.url, row.events, row.created_by) == (
        CRM, ["signature.created", "supporter.erased"], email_of("admin"))
    shown = page(answer)
    assert row.secret in shown and "shown only this once" in shown
    assert 'data-copy="receiver-secret"' in shown
    # Each type is offered with what it means.
    for meaning in ("Someone signed a petition", "their id only"):
        assert meaning in shown
    for later in ("/staff/receivers", f"/staff/receivers/{row.id}",
                  f"/staff/receivers/{row.id}/remove"):
        again = sam.get(later)
        assert again.status_code == 200 and row.secret not in page(again), later
        assert CRM in page(again)
    assert actions(sessions) == [(email_of("admin"), "receiver.add", f"receiver:{row.id}")]


@pytest.mark.parametrize(("url", "types", "said"), [
    ("http://crm.example.org/hook", ("signature.created",), "Must be https"),
    ("https://ops:hunter2@crm.example.org/", ("signature.created",), "No user name"),
    ("", ("signature.created",), "This field is required"),
    (CRM, (), "Choose at least one kind of event"),
    (CRM, ("ping",), "is not a valid choice"),
])
def test_a_receiver_that_breaks_a_rule_is_refused_next_to_its_field(
        app: Flask, people: dict[str, int], sessions: sessionmaker[Session], url: str,
        types: tuple[str, ...], said: str) -> None:
    refused = add(browser(app, "admin"), url, types)
    assert refused.status_code == 400
    assert said in page(refused)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Receiver)) == 0
    assert actions(sessions) == []


def test_sam_pings_the_crm_and_only_it_is_sent_the_ping(
        app: Flask, people: dict[str, int], sessions: sessionmaker[Session]) -> None:
    sam = browser(app, "admin")
    add(sam)
    add(sam, "http://127.0.0.1:9000/events")  # the suite lets 127.0.0.1 be plain http
    crm = the_receiver_by_url(sessions, CRM)
    pinged = sam.post(f"/staff/receivers/{crm}/ping")
    assert pinged.status_code == 303
    assert pinged.headers["Location"].endswith(f"/staff/receivers/{crm}")
    assert statuses(sessions) == [(crm, "ping", "pending")]
    assert "A ping (evt_" in page(sam.get(pinged.headers["Location"]))
    assert actions(sessions)[-1] == (email_of("admin"), "receiver.ping", f"receiver:{crm}")
    assert sam.post("/staff/receivers/999/ping").status_code == 404


def the_receiver_by_url(sessions: sessionmaker[Session], url: str) -> int:
    with sessions() as session:
        found = session.scalar(select(Receiver.id).where(Receiver.url == url))
    assert found is not None
    return found


def test_sam_sends_parked_deliveries_again_one_then_all(
        app: Flask, people: dict[str, int], sessions: sessionmaker[Session]) -> None:
    sam = browser(app, "admin")
    add(sam)
    crm = the_receiver(sessions).id
    first, second, third = parked(sessions, crm, 3)
    shown = page(sam.get(f"/staff/receivers/{crm}"))
    assert "Send all 3 again" in shown and "HTTP 502" in shown
    assert all(f'id="delivery-{d}"' in shown for d in (first, second, third))
    one = sam.post(f"/staff/receivers/{crm}/send-again", {"delivery": str(second)})
    assert one.status_code == 303
    assert [s for _, _, s in statuses(sessions)] == ["failed", "pending", "failed"]
    assert "1 parked delivery is back in the outbox" in page(sam.get(f"/staff/receivers/{crm}"))
    sam.post(f"/staff/receivers/{crm}/send-again")
    assert [s for _, _, s in statuses(sessions)] == ["pending"] * 3
    with sessions() as session:
        assert {(d.attempts, d.failed_at) for d in session.scalars(select(EventDelivery))} == {
            (0, None)}
    after = page(sam.get(f"/staff/receivers/{crm}"))
    assert "2 parked deliveries are back" in after and "Send all" not in after
    assert sam.post(f"/staff/receivers/{crm}/send-again",
                    {"delivery": "not-an-id"}).status_code == 400
    assert [a for _, a, _ in actions(sessions)] == ["receiver.add", "receiver.retry",
                                                    "receiver.retry"]


def test_a_parked_delivery_overtaken_by_a_later_one_stays_parked_and_sam_is_told(
        app: Flask, people: dict[str, int], sessions: sessionmaker[Session]) -> None:
    """Supporter 1's signature was parked; since then the CRM took news of their erasure:
    sent again, the signature would arrive after it."""
    sam = browser(app, "admin")
    add(sam)
    crm = the_receiver(sessions).id
    overtaken, waiting = parked(sessions, crm, 2)
    with sessions.begin() as session:
        events.record(session.connection(), events.SUPPORTER_ERASED, {"supporter": 1}, 1,
                      dt.datetime.now(dt.UTC))
        session.execute(update(EventDelivery).where(EventDelivery.status == "pending")
                        .values(status="delivered"))
    shown = page(sam.get(f"/staff/receivers/{crm}"))
    assert "it would arrive out of order" in shown
    row = shown[shown.index(f'id="delivery-{overtaken}"'):]
    assert row.index("Overtaken: not sent again") < row.index("</tr>")
    assert f'value="{waiting}"' in shown and f'value="{overtaken}"' not in shown
    assert sam.post(f"/staff/receivers/{crm}/send-again").status_code == 303
    told = page(sam.get(f"/staff/receivers/{crm}"))
    assert "1 parked delivery is back in the outbox" in told
    assert "1 parked delivery was not sent again: a later event about the same supporter " \
           "has already reached the receiver" in told
    assert [s for _, _, s in statuses(sessions)] == ["failed", "pending", "delivered"]


def test_sam_removes_the_crm_after_a_confirmation_page(
        app: Flask, people: dict[str, int], sessions: sessionmaker[Session]) -> None:
    sam = browser(app, "admin")
    add(sam)
    crm = the_receiver(sessions).id
    parked(sessions, crm, 2)
    asked = sam.get(f"/staff/receivers/{crm}/remove")
    assert asked.status_code == 200
    assert "2 parked will never reach it" in page(asked)
    assert the_receiver(sessions).id == crm  # asking removes nothing
    removed = sam.post(f"/staff/receivers/{crm}/remove")
    assert removed.status_code == 303 and removed.headers["Location"].endswith(
        "/staff/receivers")
    assert f"Receiver {crm} removed" in page(sam.get("/staff/receivers"))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Receiver)) == 0
        assert session.scalar(select(func.count()).select_from(EventDelivery)) == 0
        assert session.scalar(select(func.count()).select_from(Event)) == 0
    assert sam.get(f"/staff/receivers/{crm}").status_code == 404
    assert sam.post(f"/staff/receivers/{crm}/remove").status_code == 404
    assert actions(sessions)[-1] == (email_of("admin"), "receiver.remove", f"receiver:{crm}")


def test_viewers_and_editors_are_refused_every_receiver_page_and_action(
        app: Flask, people: dict[str, int], sessions: sessionmaker[Session]) -> None:
    sam = browser(app, "admin")
    add(sam)
    crm = the_receiver(sessions).id
    parked(sessions, crm, 1)
    for role in ("viewer", "editor"):
        them = browser(app, role)
        assert 'href="/staff/receivers"' not in page(them.get("/staff/"))
        for path in ("/staff/receivers", f"/staff/receivers/{crm}",
                     f"/staff/receivers/{crm}/remove"):
            assert them.get(path).status_code == 403, (role, path)
        for path in ("/staff/receivers", f"/staff/receivers/{crm}/ping",
                     f"/staff/receivers/{crm}/send-again", f"/staff/receivers/{crm}/remove"):
            assert them.post(path, {"url": CRM, "events": ["signature.created"]}
                             ).status_code == 403, (role, path)
    anonymous = Browser(app.test_client())
    assert anonymous.get("/staff/receivers").status_code == 302
    assert statuses(sessions) == [(crm, "signature.created", "failed")]
    assert [a for _, a, _ in actions(sessions)] == ["receiver.add"]


def test_every_receiver_form_needs_its_csrf_token(
        app: Flask, people: dict[str, int], sessions: sessionmaker[Session]) -> None:
    sam = browser(app, "admin")
    add(sam)
    crm = the_receiver(sessions).id
    parked(sessions, crm, 1)
    for path in ("/staff/receivers", f"/staff/receivers/{crm}/ping",
                 f"/staff/receivers/{crm}/send-again", f"/staff/receivers/{crm}/remove"):
        forged = sam.post(path, {"url": "https://evil.example/", "events": ["ping"]},
                          token=False)
        assert forged.status_code == 400, path
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Receiver)) == 1
    assert statuses(sessions) == [(crm, "signature.created", "failed")]
