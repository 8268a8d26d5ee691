"""A test send to yourself, in a real browser on a phone-sized screen (390 px): Playwright
for Python driving Debian's chromium, headless, against the app served by a real HTTP
server on loopback (werkzeug, threaded).

Jo, an editor, opens Test sends from the header and asks for a code; her phone texts it
to the bot (a Twilio webhook, signed as Twilio signs it); the page then shows her number,
partly masked. On a colleague's draft she presses "Send a test to me": a real
BroadcastWorker, in a thread, sends it with the real Twilio client to the loopback fake
Twilio API, which receives exactly the text supporters would get, at her number, and at
nobody else's.

Screenshots of the Test sends page at 390 px (with the code, then with the phone linked)
go to test-artifacts/, each once axe-core finds nothing serious on it. Without
/usr/bin/chromium the module is skipped, except in CI (CI set), where that fails. Every
wait is bounded.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import bot.entry.worker as worker_module
from bot.channels.twilio.outbound import TwilioSender
from bot.entry.worker import BroadcastWorker
from bot.infra.settings import Settings
from bot.shell import broadcast
from tests.e2e.browser import (  # skips this module without chromium
    PHONE,
    Page,
    Site,
    expect,
    page_width,
    quiet_hours_off,
    running_worker,
    screenshot,
    send_login,
    serious_violations,
    served,
)
from tests.fakes.twilio_api import FakeTwilio
from tests.integration.console_helpers import add_people, email_of

SENT_WAIT_S = 15       # the worker handing the test to the fake Twilio

pytestmark = pytest.mark.e2e

JO = "+447700900555"      # the editor's own mobile
AMIRA = "+447700900101"   # a supporter who signed and asked for updates
DRAFT = "The hand-in is on Friday at 11am outside NHS England. Come if you can!"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    """The fake Twilio API the app and the worker send to."""
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def site(settings: Settings, tmp_path: Path, twilio: FakeTwilio) -> Iterator[Site]:
    with served(settings, simulator=tmp_path / "sim.db",
                secret_key="e2e-test-sends-secret-key",
                twilio_api_base_url=twilio.base_url) as site:
        add_people(site.sessions)
        yield site


@pytest.fixture
def worker(site: Site, settings: Settings, database_url: str, twilio: FakeTwilio,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[BroadcastWorker]:
    """A real BroadcastWorker in a thread, quiet hours off, sending SMS with the real
    Twilio client to the fake Twilio API."""
    monkeypatch.setattr(worker_module, "IDLE_SLEEP", 0.05)  # brisk, never asserted on
    sms = TwilioSender(dataclasses.replace(settings, twilio_api_base_url=twilio.base_url),
                       "sms")
    with running_worker(quiet_hours_off(site.config), database_url, {"sms": sms},
                        "test-sends-worker") as running:
        yield running


@pytest.fixture
def phone_page(open_page: Callable[..., Page]) -> Page:
    return open_page(viewport=PHONE)


def log_in(page: Page, email: str) -> None:
    send_login(page, email)
    expect(page).to_have_url(re.compile(r"/staff/$"))


def phone_screenshot(page: Page, name: str) -> None:
    """A full-page screenshot to test-artifacts/, once the page is seen not to scroll
    sideways on the phone and axe-core finds nothing serious or critical on it."""
    assert page_width(page) <= PHONE["width"], name
    serious = [f"{v['id']} ({v['impact']})" for v in serious_violations(page)]
    assert serious == [], (name, serious)
    screenshot(page, name)


def test_jo_links_her_phone_and_sends_herself_a_test_that_arrives_as_supporters_see_it(
        site: Site, twilio: FakeTwilio, worker: BroadcastWorker, phone_page: Page) -> None:
    for body in ("Hi", "SIGN", "YES", "Amira Khan", "EH1 1AA", "YES", "YES"):
        site.text(AMIRA, body)  # a supporter who gets updates: not part of a test
    with site.sessions.begin() as session:
        draft = broadcast.create(session, site.config, "sirt", DRAFT, email_of("admin")).id
    page = phone_page
    log_in(page, email_of("editor"))

    page.get_by_role("link", name="Test sends").click()
    expect(page.get_by_role("heading", name="Test sends", level=1)).to_be_visible()
    expect(page.locator("main")).to_contain_text("Nothing is linked yet")
    page.get_by_role("button", name="Link my phone or Telegram").click()
    code = page.locator("#link-code").inner_text()
    assert re.fullmatch(r"PB \d{4} \d{4}", code), code
    expect(page.locator("#send-to")).to_contain_text("SMS: to +44 7700 900000")
    phone_screenshot(page, "console-test-sends-code-390.png")

    [answer] = site.text(JO, code)
    assert f"linked to the staff account {email_of('editor')} for test sends" in answer
    page.get_by_role("link", name="look at this page again").click()
    linked = page.locator("#linked .card")
    expect(linked).to_have_count(1)
    expect(linked.get_by_role("heading", name="SMS")).to_be_visible()
    expect(linked).to_contain_text("+4477******55")
    expect(linked).to_contain_text("Gets your tests.")
    expect(page.locator("main")).not_to_contain_text(JO)
    phone_screenshot(page, "console-test-sends-390.png")

    page.goto(f"/staff/announcements/{draft}")
    expect(page.locator("#test-reach")).to_contain_text("To your SMS (+4477******55)")
    page.get_by_role("button", name="Send a test to me").click()
    expect(page.locator(".flash")).to_contain_text("Test queued: 1 message(s)")

    supporters_copy = broadcast.compose(DRAFT, "sms", site.config)
    [received] = twilio.wait_for(lambda fake: fake.sent_to(JO), timeout=SENT_WAIT_S,
                                      message="the test reaching Jo's phone")
    assert received["body"] == supporters_copy
    assert received["from"] == "+447700900000"  # the bot's own number, as supporters see
    expect(page.locator("#status")).to_have_text("sent", timeout=SENT_WAIT_S * 1000)
    assert twilio.sent_to(AMIRA) == []
