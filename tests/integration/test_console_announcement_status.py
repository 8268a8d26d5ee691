"""The console explains itself: an announcement that is not moving says why on its page, in
the list and in the progress JSON the page polls; approving at night asks first, on a page
of its own (no script needed), and the page's hidden answer completes the approval. The
app's clock is fixed: London, Saturday 5 December 2026. CSRF is on, as in production.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell import broadcast
from bot.shell.service import Service
from models import Announcement, AuditEntry, Delivery
from models.supporters import petition_id
from tests.integration.console_helpers import Browser, add_people, email_of
from tests.integration.test_announcement_status import NIGHT, NOON, subscribe

QUIET = ("It is 22:40 in London, within quiet hours (21:00-08:00). If you approve now it "
         "will start sending at 08:00 tomorrow.")
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')
SEEN = re.compile(r'name="seen" type="hidden" value="([0-9a-f]+)"')
SetClock = Callable[[dt.datetime], None]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A server with no SMS sender configured."""
    return dataclasses.replace(settings, twilio_sms_from="", twilio_messaging_service_sid="")


@pytest.fixture
def app(app: Flask, tmp_path: Path) -> Flask:
    app.config.update(STAFF_CACHE_SECONDS=0,
                      STAFF_SIMULATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'simulator.db'}")
    return app


@pytest.fixture
def clock(app: Flask) -> SetClock:
    """Sets the app's clock; night to begin with."""

    def set_to(moment: dt.datetime) -> None:
        app.extensions["petitionbot"].service.clock = lambda: moment

    set_to(NIGHT)
    return set_to


@pytest.fixture
def audience(app: Flask, service: Service, sessions: sessionmaker[Session]) -> None:
    """Two SMS subscribers and one on Telegram."""
    with sessions() as session:
        petition = petition_id(session, "sirt")
    assert petition is not None
    subscribe(sessions, petition, "sms", "+447700900501")
    subscribe(sessions, petition, "sms", "+447700900502")
    subscribe(sessions, petition, "telegram", "4501")


@pytest.fixture
def staff(app: Flask, sessions: sessionmaker[Session]) -> None:
    add_people(sessions)


def logged_in(app: Flask, email: str) -> Browser:
    b = Browser(app.test_client())
    assert b.login(email).status_code == 302
    return b


def draft_by(sessions: sessionmaker[Session], config: Config, email: str) -> int:
    with sessions.begin() as session:
        return broadcast.create(session, config, "sirt", "The hand-in is on Friday.", email,
                                now=NIGHT).id


def status_of(sessions: sessionmaker[Session], announcement_id: int) -> str:
    with sessions() as session:
        found = session.get(Announcement, announcement_id)
        assert found is not None
        return found.status


def deliveries(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Delivery)) or 0


def text_of(response: TestResponse) -> str:
    """The page's words, as a person reads them."""
    return html.unescape(re.sub(r"\s+", " ", response.get_data(as_text=True)))


def flashed(b: Browser, response: TestResponse) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    return text_of(b.get(response.headers["Location"]))


def confirm_form(page: str) -> dict[str, str]:
    """The hidden fields of the confirmation page's form, as a browser would send them."""
    form = page[page.index('<form method="post"'):]
    return dict(HIDDEN.findall(form[:form.index("</form>")]))


# Approving at night -----------------------------------------------------------------------------

def test_approving_at_night_asks_first_and_the_answer_approves_it(
        app: Flask, clock: SetClock, audience: None, staff: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    admin = logged_in(app, "admin2@planets.example")
    aid = draft_by(sessions, config, email_of("editor"))
    page = admin.get(f"/staff/announcements/{aid}").get_data(as_text=True)
    assert QUIET in html.unescape(page)  # said on the page before anyone presses Approve
    seen = SEEN.search(page)
    assert seen

    asked = admin.post(f"/staff/announcements/{aid}/approve",
                       {"when": "now", "seen": seen.group(1)})
    assert asked.status_code == 200
    words = text_of(asked)
    assert "Approve during quiet hours?" in words and QUIET in words and "Approve?" in words
    assert "to 3 recipient(s)" in words
    assert (status_of(sessions, aid), deliveries(sessions)) == ("draft", 0)  # not yet

    answer = confirm_form(asked.get_data(as_text=True))
    assert answer.keys() == {"csrf_token", "when", "seen", "confirm"}
    assert (answer["when"], answer["seen"], answer["confirm"]) == ("now", seen.group(1), "yes")
    approved = admin.post(f"/staff/announcements/{aid}/approve", answer, token=False)
    assert ("Approved and sending to 3 recipient(s). Quiet hours hold it: it starts sending "
            "at 08:00 tomorrow.") in flashed(admin, approved)
    assert (status_of(sessions, aid), deliveries(sessions)) == ("sending", 3)
    with sessions() as session:
        assert session.scalar(select(AuditEntry.actor).where(
            AuditEntry.action == "announcement.approve")) == "admin2@planets.example"


def test_at_night_whoever_may_not_approve_is_refused_without_being_asked(
        app: Flask, clock: SetClock, audience: None, staff: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    admin = logged_in(app, email_of("admin"))
    mine = draft_by(sessions, config, email_of("admin"))
    refused = admin.post(f"/staff/announcements/{mine}/approve", {"when": "now"})
    page = flashed(admin, refused)
    assert "You wrote this announcement, so another staff member must approve it." in page
    assert "Approve during quiet hours?" not in page
    forged = admin.post(f"/staff/announcements/{mine}/approve",
                        {"when": "now", "confirm": "yes"})
    assert "another staff member must approve it" in flashed(admin, forged)
    assert (status_of(sessions, mine), deliveries(sessions)) == ("draft", 0)


def test_a_time_chosen_within_quiet_hours_asks_too_and_daytime_does_not(
        app: Flask, clock: SetClock, audience: None, staff: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    clock(NOON)
    admin = logged_in(app, "admin2@planets.example")
    late = draft_by(sessions, config, email_of("editor"))
    asked = admin.post(f"/staff/announcements/{late}/approve",
                       {"when": "later", "at": "2026-12-06T23:00"})
    assert asked.status_code == 200
    assert ("The time chosen, 23:00 tomorrow, is within quiet hours (21:00-08:00) in London: "
            "it will start sending at 08:00 on Monday 7 December.") in text_of(asked)
    answer = confirm_form(asked.get_data(as_text=True))
    assert (answer["when"], answer["at"]) == ("later", "2026-12-06T23:00")
    scheduled = admin.post(f"/staff/announcements/{late}/approve", answer, token=False)
    assert "Approved: scheduled for 06 Dec 2026 23:00." in flashed(admin, scheduled)
    assert status_of(sessions, late) == "scheduled"

    now_one = draft_by(sessions, config, email_of("editor"))
    at_once = admin.post(f"/staff/announcements/{now_one}/approve", {"when": "now"})
    assert "Approved and sending to 3 recipient(s)." in flashed(admin, at_once)
    assert status_of(sessions, now_one) == "sending"


# Saying why ------------------------------------------------------------------------------------

def test_a_held_announcement_says_why_on_its_page_in_the_list_and_in_the_progress_json(
        app: Flask, clock: SetClock, audience: None, staff: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    viewer = logged_in(app, email_of("viewer"))
    aid = draft_by(sessions, config, email_of("editor"))
    with sessions.begin() as session:
        found = session.get(Announcement, aid)
        assert found is not None
        broadcast.approve(session, config, found, "admin2@planets.example", NIGHT)

    page = viewer.get(f"/staff/announcements/{aid}").get_data(as_text=True)
    why = text_of_section(page, "why")
    assert "What is holding it up" in why
    assert ("It is 22:40 in London, within quiet hours (21:00-08:00): sending waits until "
            "08:00 tomorrow.") in why
    assert ("No SMS sender is set up on this server (TWILIO_SMS_FROM or "
            "TWILIO_MESSAGING_SERVICE_SID), so 2 SMS recipients will not get it until one "
            "is.") in why
    assert "No sending process is running, so nothing is being sent." in why

    listed = text_of(viewer.get("/staff/announcements"))
    assert "quiet hours until 08:00; no worker running" in listed

    progress = viewer.get(f"/staff/announcements/{aid}/progress.json").get_json()
    assert progress["status"] == "sending" and progress["moving"] is False
    codes = [(e["code"], e["kind"]) for e in progress["explanations"]]
    assert codes[:2] == [("quiet_hours", "hold"), ("no_worker", "hold")]
    assert ("no_sms_sender", "hold") in codes


def test_why_some_people_did_not_get_it_is_shown_per_code(
        app: Flask, clock: SetClock, audience: None, staff: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    clock(NOON)
    viewer = logged_in(app, email_of("viewer"))
    aid = draft_by(sessions, config, email_of("editor"))
    with sessions.begin() as session:
        found = session.get(Announcement, aid)
        assert found is not None
        broadcast.approve(session, config, found, "admin2@planets.example", NOON)
        session.execute(update(Delivery).where(Delivery.channel == "sms")
                        .values(status="failed", error_code="30007"))
        session.execute(update(Delivery).where(Delivery.channel == "telegram")
                        .values(status="sent"))
        found.status = "sent"
    page = viewer.get(f"/staff/announcements/{aid}").get_data(as_text=True)
    assert 'id="why"' in page and text_of_section(page, "why") == ""  # nothing holds it
    outcomes = text_of_section(page, "outcomes")
    assert ("2 SMS messages failed (carrier filtering, Twilio code 30007): the phone company "
            "held the message back as likely spam.") in outcomes


def text_of_section(page: str, element_id: str) -> str:
    """The words of the element with this id, or "" when it is hidden."""
    start = page.index(f'id="{element_id}"')
    opening = page[page.rindex("<", 0, start):page.index(">", start)]
    if " hidden" in opening:
        return ""
    tag = opening[1:].split(" ", 1)[0]
    body = page[start:page.index(f"</{tag}>", start)]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))
