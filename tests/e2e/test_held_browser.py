"""A held announcement says why, in a real browser on a phone-sized screen: at 22:40 in
London an admin approves an editor's announcement on a server with no SMS sender; the
console asks first (quiet hours), then the announcement's page says in words that quiet
hours hold it until 08:00 and that the SMS recipients will not get it, and keeps saying so
as it polls. A screenshot at 390 px goes to test-artifacts/held-announcement-390.png.

Playwright for Python drives Debian's chromium against the app served on loopback; the
app's clock is fixed; every wait is bounded (at most 15 s).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.settings import Settings
from bot.shell import broadcast
from models import Announcement, Delivery
from models.supporters import petition_id
from tests.e2e.browser import (  # skips this module without chromium
    PHONE,
    Page,
    Site,
    expect,
    page_width,
    screenshot,
    send_login,
    served,
)
from tests.e2e.browser import WAIT_MS as USUAL_WAIT_MS
from tests.integration.console_helpers import add_people, email_of
from tests.integration.test_announcement_status import NIGHT, subscribe

WAIT_MS = 15_000  # every Playwright action, navigation and expectation here

pytestmark = pytest.mark.e2e

QUIET_NOW = ("It is 22:40 in London, within quiet hours (21:00-08:00). If you approve now it "
             "will start sending at 08:00 tomorrow.")
HELD = ("It is 22:40 in London, within quiet hours (21:00-08:00): sending waits until 08:00 "
        "tomorrow.")
NO_SMS = ("No SMS sender is set up on this server (TWILIO_SMS_FROM or "
          "TWILIO_MESSAGING_SERVICE_SID), so 2 SMS recipients will not get it until one is.")


@pytest.fixture(autouse=True)
def expectations_wait_longer() -> Iterator[None]:
    """Expectations here wait up to WAIT_MS, not the other browser tests' USUAL_WAIT_MS."""
    expect.set_options(timeout=WAIT_MS)
    yield
    expect.set_options(timeout=USUAL_WAIT_MS)


@pytest.fixture
def site(settings: Settings) -> Iterator[Site]:
    """The app on loopback at 22:40 London time, with Twilio but no SMS sender."""
    with served(settings, secret_key="e2e-held-secret-key", twilio_sms_from="",
                twilio_messaging_service_sid="") as site:
        site.app.extensions["petitionbot"].service.clock = lambda: NIGHT
        yield site


def a_draft_with_three_recipients(sessions: sessionmaker[Session], app: Flask) -> int:
    """Two SMS subscribers and one on Telegram, and an editor's draft to them."""
    add_people(sessions)
    with sessions() as session:
        petition = petition_id(session, "sirt")
    assert petition is not None
    subscribe(sessions, petition, "sms", "+447700900601")
    subscribe(sessions, petition, "sms", "+447700900602")
    subscribe(sessions, petition, "telegram", "4601")
    config = app.extensions["petitionbot"].config
    with sessions.begin() as session:
        return broadcast.create(session, config, "sirt", "The petition is handed in on "
                                "Friday at 11am.", email_of("editor"), now=NIGHT).id


def test_an_announcement_held_by_quiet_hours_without_an_sms_sender_says_why(
        site: Site, open_page: Callable[..., Page]) -> None:
    sessions = site.sessions
    aid = a_draft_with_three_recipients(sessions, site.app)

    page = open_page(viewport=PHONE, timeout=WAIT_MS)
    send_login(page, "admin2@planets.example")
    expect(page.locator(".who")).to_contain_text("admin2@planets.example")

    # Before approving, the draft's page already says what approving now would mean.
    page.goto(f"/staff/announcements/{aid}")
    why = page.locator("#why")
    expect(why).to_contain_text(QUIET_NOW)
    expect(why).to_contain_text(NO_SMS)

    page.once("dialog", lambda dialog: dialog.accept())  # the script's own "Send this...?"
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", name="Approve during quiet hours?")).to_be_visible()
    expect(page.locator("#quiet-warning")).to_have_text(QUIET_NOW)
    with sessions() as session:
        assert session.scalar(select(Announcement.status).where(
            Announcement.id == aid)) == "draft"  # nothing happens before the answer
    page.get_by_role("button", name="Approve").click()

    expect(page).to_have_url(re.compile(rf"/staff/announcements/{aid}$"))
    expect(page.locator(".flash")).to_contain_text(
        "Quiet hours hold it: it starts sending at 08:00 tomorrow.")
    expect(page.locator("#status")).to_have_text("sending")
    expect(why).to_contain_text("What is holding it up")
    expect(why).to_contain_text(HELD)
    expect(why).to_contain_text(NO_SMS)
    expect(why).to_contain_text("No sending process is running, so nothing is being sent.")

    # The page polls its progress; the explanations stay, rebuilt from progress.json.
    with page.expect_response(re.compile(r"/progress\.json$"), timeout=WAIT_MS) as polled:
        pass
    assert polled.value.ok
    expect(why.locator("li[data-code=quiet_hours]")).to_have_text(HELD)
    expect(why.locator("li[data-code=no_sms_sender]")).to_contain_text(NO_SMS)
    width = page_width(page)
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    screenshot(page, "held-announcement-390.png", WAIT_MS)

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.announcement_id == aid, Delivery.status == "pending")) == 3
