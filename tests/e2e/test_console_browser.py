"""The staff console in a real browser: Playwright for Python driving Debian's chromium,
headless, against the app served by a real HTTP server on loopback (werkzeug, threaded).

- an editor drafts an announcement; the live preview warns about the characters that force
  Unicode and shows the segment counts; a second person (an admin) approves it and a real
  BroadcastWorker, in a thread, sends it through an in-process fake: the progress view
  reaches "sent";
- a viewer finds no send or export button, and the URLs behind them are refused;
- the simulator signs a test supporter (buttons and typed answers) and the live totals do
  not move;
- logging out ends the session.

Screenshots of the dashboard and the composer go to test-artifacts/ at the repository root.
Without /usr/bin/chromium the module is skipped, except in CI (CI set), where that fails.
Every wait is bounded (Playwright timeouts of at most 15 s).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.core.gsm import segments
from bot.core.outcomes import Job, Result, SendResult
from bot.infra.settings import Settings
from bot.shell import broadcast
from models import Announcement, Delivery, Identity, Signature
from tests.e2e.browser import (  # skips this module without chromium
    WAIT_MS,
    Dialog,
    Page,
    Site,
    csrf_token,
    expect,
    log_in,
    page_width,
    quiet_hours_off,
    running_worker,
    screenshot,
    served,
)
from tests.integration.console_helpers import add_people, email_of

SENT_WAIT_MS = 15_000  # the progress view reaching "sent" (worker heartbeat + 2 s polls)

pytestmark = pytest.mark.e2e

CURLY = "We\u2019re nearly there \U0001F389 thank you all for signing"
SIGNERS = [  # number, name, postcode, channel, updates
    ("+447700900101", "Amira Khan", "EH1 1AA", "sms", "YES"),
    ("+447700900102", "Ben Jones", "CF10 1AA", "sms", "YES"),
    ("+447700900103", "Carys Evans", "LL11 1AA", "whatsapp", "YES"),
    ("+447700900104", "Dan Smith", "M1 1AA", "sms", "NO"),
    ("+447700900105", "Erin Walsh", "BT1 1AA", "whatsapp", "NO"),
    ("+447700900106", "Fiona Reid", "G1 1AA", "sms", "YES"),
]


# The server and the worker ----------------------------------------------------------------

@pytest.fixture
def site(settings: Settings, tmp_path: Path) -> Iterator[Site]:
    with served(settings, simulator=tmp_path / "simulator.db",
                secret_key="e2e-console-secret-key") as site:
        assert site.app.config["SESSION_COOKIE_SECURE"] is False
        add_people(site.sessions)
        yield site


@dataclass
class FakeSender:
    """A provider that accepts every message at once."""

    channel: str
    sent: list[Job] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, job: Job) -> SendResult:
        with self.lock:
            self.sent.append(job)
        return SendResult(Result.SENT, provider_id=f"fake-{self.channel}-{job.delivery_id}")


@pytest.fixture
def worker(site: Site, database_url: str) -> Iterator[dict[str, FakeSender]]:
    """A real BroadcastWorker running in a thread, quiet hours off, sending to fakes; the
    app's quiet hours are off too, so approving at any hour needs no second question."""
    config = quiet_hours_off(site.config)
    site.app.extensions["petitionbot"].config = config
    senders = {c: FakeSender(c) for c in ("sms", "whatsapp", "telegram")}
    with running_worker(config, database_url, senders, "console-worker"):
        yield senders


# Announcements ------------------------------------------------------------------------------

def test_an_editor_drafts_with_the_sms_warning_and_another_admin_sends_it(
        site: Site, worker: dict[str, FakeSender], open_page: Callable[[], Page]) -> None:
    for number, name, postcode, channel, updates in SIGNERS[:3]:
        site.sign_up(number, name, postcode, channel, updates)

    editor = open_page()
    log_in(editor, email_of("editor"))
    editor.get_by_role("navigation", name="Console").get_by_role(
        "link", name="Announcements").click()
    editor.get_by_role("link", name="Compose an announcement").click()
    expect(editor).to_have_url(re.compile(r"/staff/announcements/new$"))
    message = editor.get_by_label("Message")
    message.click()
    message.press_sequentially(CURLY)

    # The live preview: the characters that force Unicode, and the segment counts.
    sms_text = broadcast.compose(CURLY, "sms", site.config)
    unicode_text = broadcast.compose(CURLY, "whatsapp", site.config)
    sms_box = editor.locator("#preview article.bubble.sms")
    warning = sms_box.locator(".warning[role=alert]")
    expect(warning).to_contain_text("would force Unicode")
    expect(warning).to_contain_text(f"{segments(unicode_text)} segment(s)")
    expect(warning).to_contain_text("\u2019 (right single quotation mark) \u2192 '")
    expect(warning).to_contain_text("\U0001F389")
    expect(sms_box).to_contain_text(f"GSM-7, {segments(sms_text)} segment(s) each")
    expect(sms_box.locator("pre")).to_have_text(sms_text)
    expect(editor.locator("#preview")).to_contain_text("3 recipient(s) now")
    expect(editor.locator("#text-count")).to_have_text(f"{len(CURLY)} of 1,200 characters")
    assert segments(unicode_text) > segments(sms_text)  # the warning is worth reading
    screenshot(editor, "console-composer.png")

    editor.get_by_role("button", name="Save as draft").click()
    expect(editor).to_have_url(re.compile(r"/staff/announcements/\d+$"))
    expect(editor.locator(".flash")).to_contain_text("Draft saved")
    expect(editor.locator("#status")).to_have_text("draft")
    expect(editor.get_by_role("button", name="Approve")).to_have_count(0)
    draft_url = editor.url
    announcement_id = int(draft_url.rsplit("/", 1)[1])

    # Logging out ends the session: the console asks for a login again.
    editor.get_by_role("button", name="Log out").click()
    expect(editor).to_have_url(re.compile(r"/staff/login$"))
    expect(editor.locator(".flash")).to_contain_text("You are logged out.")
    editor.goto(draft_url)
    expect(editor).to_have_url(re.compile(r"/staff/login\?next=/staff/announcements/\d+$"))
    expect(editor.get_by_role("button", name="Log in")).to_be_visible()

    # Another staff member, an admin, approves it; the confirm dialog is answered.
    admin = open_page()
    log_in(admin, "admin2@planets.example")
    admin.goto(draft_url)
    expect(admin.get_by_label("Send now")).to_be_checked()
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    admin.once("dialog", answer)
    admin.get_by_role("button", name="Approve").click()
    expect(admin.locator(".flash")).to_contain_text("Approved and sending to 3 recipient(s).")
    assert asked == ["Send this to 3 recipient(s)?"]

    # The progress view follows the real worker until the announcement is sent.
    expect(admin.locator("#status")).to_have_text("sent", timeout=SENT_WAIT_MS)
    expect(admin.locator("#progress-note")).to_have_text("Finished.")
    expect(admin.locator('#progress td[data-status="sent"]')).to_have_text("3")
    expect(admin.locator('#progress td[data-status="pending"]')).to_have_text("0")
    expect(admin.locator("#progress-bar")).to_have_attribute("value", "3")
    for stale in ("Pause", "Cancel"):  # nothing left to stop
        expect(admin.get_by_role("button", name=stale)).to_have_count(0)
    screenshot(admin, "console-announcement-sent.png")

    sent = {c: [j.text for j in s.sent] for c, s in worker.items()}
    assert sent == {"sms": [sms_text, sms_text], "whatsapp": [unicode_text], "telegram": []}
    with site.sessions() as session:
        found = session.get(Announcement, announcement_id)
        assert found is not None
        assert (found.status, found.created_by, found.approved_by) == (
            "sent", email_of("editor"), "admin2@planets.example")
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.announcement_id == announcement_id, Delivery.status == "sent")) == 3


# Roles --------------------------------------------------------------------------------------

def test_a_viewer_cannot_reach_send_or_export(
        site: Site, open_page: Callable[[], Page]) -> None:
    site.sign_up(*SIGNERS[0])
    with site.sessions.begin() as session:
        draft = broadcast.create(session, site.config, "sirt", "The hand-in is on Friday.",
                                 email_of("editor")).id
        supporter = session.scalar(select(Identity.supporter_id))
    viewer = open_page()
    log_in(viewer, email_of("viewer"))
    nav = viewer.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(nav.get_by_role("link", name="Supporters")).to_have_count(0)
    expect(nav.get_by_role("link", name="Audit log")).to_have_count(0)

    # No button to compose, approve, test or export.
    nav.get_by_role("link", name="Announcements").click()
    expect(viewer.get_by_role("link", name="Compose an announcement")).to_have_count(0)
    viewer.get_by_role("link", name=f"#{draft}", exact=True).click()
    expect(viewer.locator("#status")).to_have_text("draft")
    expect(viewer.locator("main")).to_contain_text("An admin approves and sends it.")
    for label in ("Approve", "Edit", "Send a test", "Discard the draft"):
        expect(viewer.get_by_role("button", name=label)).to_have_count(0)
        expect(viewer.get_by_role("link", name=label)).to_have_count(0)
    nav.get_by_role("link", name="Hand-in").click()
    expect(viewer.get_by_role("link", name="Summary by nation and area (CSV)")).to_be_visible()
    expect(viewer.get_by_role("link", name="Every signature (CSV)")).to_have_count(0)

    # The URLs behind them are refused, with the role it takes.
    for path, role in (("/staff/announcements/new", "editor"),
                       ("/staff/handin/signatures.csv", "admin"),
                       (f"/staff/supporters/{supporter}", "admin")):
        response = viewer.goto(path)
        assert response is not None and response.status == 403, path
        expect(viewer.locator("main")).to_contain_text(f"This needs the {role} role")
    viewer.goto("/staff/")
    token = csrf_token(viewer)
    for path, role in ((f"/staff/announcements/{draft}/approve", "admin"),
                       (f"/staff/announcements/{draft}/test", "editor"),
                       (f"/staff/supporters/{supporter}/export.json", "admin")):
        refused = viewer.request.post(site.base + path, form={"csrf_token": token,
                                                               "when": "now"},
                                      max_redirects=0, timeout=WAIT_MS)
        assert refused.status == 403, (path, refused.status)
        assert f"needs the {role} role" in refused.text(), path
    with site.sessions() as session:
        assert session.scalar(select(Announcement.status).where(
            Announcement.id == draft)) == "draft"
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert session.scalar(select(func.count()).select_from(Announcement)) == 1


# The simulator ------------------------------------------------------------------------------

def test_the_simulator_signs_a_test_supporter_and_the_live_totals_stay(
        site: Site, open_page: Callable[[], Page]) -> None:
    site.sign_up(*SIGNERS[0])
    page = open_page()
    log_in(page, email_of("editor"))
    figure = page.locator(".card.big .figure")
    expect(figure).to_have_text("49,258")
    live_api = page.request.get(site.base + "/api/petitions/sirt", timeout=WAIT_MS).json()
    assert live_api["counts"]["here"] == 1

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Simulator").click()
    page.get_by_role("navigation", name="Channel").get_by_role("link", name="Telegram").click()
    expect(page).to_have_url(re.compile(r"/staff/simulator\?channel=telegram$"))
    transcript = page.locator("#transcript")
    box = page.get_by_label("Your message")
    send = page.locator("#say").get_by_role("button", name="Send")

    def last_bot() -> Any:
        return transcript.locator("li.bot").last

    def say(text: str, expected: str) -> None:
        box.fill(text)
        send.click()
        expect(last_bot()).to_contain_text(expected)

    def press(label: str, expected: str) -> None:
        last_bot().get_by_role("button", name=label, exact=True).click()
        expect(transcript.locator("li.you").last).to_have_text(re.compile(re.escape(label)))
        expect(last_bot()).to_contain_text(expected)

    box.fill("Hi")
    send.click()
    expect(transcript.locator("li.bot").first).to_contain_text("49,258 people have signed")
    transcript.get_by_role("button", name="Sign the petition").click()
    expect(last_bot()).to_contain_text("will store your name")
    press("Yes", "What is your full name?")
    say("Simone Simulated", "What is your UK postcode?")
    say("G2 1AA", "Shall we sign the petition")
    expect(last_bot()).to_contain_text("Name: Simone Simulated")
    press("Yes", "Would you like updates")
    signed = transcript.locator("li.bot", has_text="you have signed")
    expect(signed).to_have_count(1)
    expect(signed).to_contain_text("49,259")  # the simulated person sees themselves counted...
    press("Yes", "We will send you updates about this campaign here")
    screenshot(page, "console-simulator.png")

    # ...but nothing live moved: not the database, the API or the dashboard.
    assert site.here() == 1
    again = page.request.get(site.base + "/api/petitions/sirt", timeout=WAIT_MS).json()
    assert again["counts"] == live_api["counts"]
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Dashboard").click()
    expect(figure).to_have_text("49,258")
    expect(page.locator(".card.big")).to_contain_text("49,257 on Change.org + 1 here")
    expect(page.locator("main")).not_to_contain_text("G2")
    with site.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Identity).where(
            Identity.address.like("sim:%"))) == 0


# The dashboard ------------------------------------------------------------------------------

def test_the_dashboard_shows_the_count_chart_and_places(
        site: Site, open_page: Callable[[], Page]) -> None:
    for signer in SIGNERS:
        site.sign_up(*signer)
    with site.sessions.begin() as session:  # spread over a few days, with referrals
        now = dt.datetime.now(dt.UTC)
        for n, days_ago in enumerate((0, 1, 1, 3, 8, 20), start=1):
            session.execute(update(Signature).where(Signature.number == n).values(
                signed_at=now - dt.timedelta(days=days_ago),
                referral="leaflet" if n % 2 else None))
    page = open_page()
    log_in(page, email_of("admin"))
    big = page.locator(".card.big")
    expect(big.locator(".figure")).to_have_text("49,263")
    expect(big).to_contain_text("49,257 on Change.org + 6 here")
    expect(page.locator("svg.chart.wide[role=img]")).to_be_visible()  # .narrow on a phone
    bars = page.locator("svg.chart.wide .bar")
    expect(bars).to_have_count(60)  # one a day for the default 60 days
    assert bars.evaluate_all(
        "bars => bars.filter(b => Number(b.getAttribute('height')) > 0).length") == 5
    nations = page.locator("section", has=page.get_by_role("heading", name="By nation"))
    expect(nations.locator("tbody td:first-child")).to_have_text(
        ["England", "Scotland", "Wales", "Northern Ireland"])
    expect(page.locator("main")).to_contain_text("leaflet")
    width = page_width(page)
    assert width <= 1280, f"the dashboard scrolls sideways ({width}px)"
    screenshot(page, "console-dashboard.png")


# Logging out --------------------------------------------------------------------------------

def test_logging_out_ends_the_session_even_for_the_back_button(
        site: Site, open_page: Callable[[], Page]) -> None:
    page = open_page()
    log_in(page, email_of("viewer"))
    expect(page.locator(".card.big .figure")).to_have_text("49,257")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/staff/login$"))
    expect(page.get_by_role("status")).to_have_text("You are logged out.")
    expect(page.get_by_role("navigation", name="Console")).to_have_count(0)
    assert not [c for c in page.context.cookies() if c["name"] == "remember_token"]
    page.go_back()  # console pages are no-store: going back asks the server again
    expect(page).to_have_url(re.compile(r"/staff/login\?next=/staff/$"))
    expect(page.locator(".card.big")).to_have_count(0)
    response = page.request.get(site.base + "/staff/announcements/preview.json",
                                timeout=WAIT_MS)
    assert response.status == 405  # GET is not a route; a POST needs a login
    refused = page.request.post(site.base + "/staff/announcements/preview.json",
                                form={"text": "x"}, timeout=WAIT_MS)
    assert refused.status in (400, 401), refused.status  # no token, no login
