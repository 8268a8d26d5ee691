"""The staff inbox in a real browser: Playwright for Python driving Debian's chromium,
headless, against the app served by a real HTTP server on loopback (werkzeug, threaded).

- the navigation counts who waits; the list puts the flagged conversation first;
- an editor types a reply: the live preview shows what SMS will do (GSM-7 or not, segments,
  cost); a saved reply fills the box; the reply goes through the outbox (a real worker) and
  its state reads "sent";
- an editor assigns a conversation to themself (it shows under Mine) and closes it (it
  shows under Closed);
- WhatsApp outside the 24-hour window: the box says why and the button is off;
- a viewer reads, finds no reply box, and the URL behind it is refused.

Screenshots go to test-artifacts/ at the repository root. Without /usr/bin/chromium the
module is skipped, except in CI (CI set), where that fails. Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from bot.core.outcomes import Job, Result, SendResult
from bot.entry.worker import BroadcastWorker
from bot.infra.config import Config
from bot.infra.settings import Settings
from models import Delivery, SavedReply
from tests.conftest import ROOT
from tests.integration.console_helpers import PASSWORD, add_people, email_of
from tests.integration.inbox_helpers import messages_of, waiting

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 10_000
IN_CI = bool(os.environ.get("CI"))

if not CHROMIUM.exists() and not IN_CI:
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
                allow_module_level=True)

from playwright.sync_api import (  # noqa: E402  (after the skip: only with a browser)
    Browser,
    Dialog,
    Page,
    expect,
    sync_playwright,
)

pytestmark = pytest.mark.e2e
expect.set_options(timeout=WAIT_MS)

AMIRA, BEN, CARYS = "+447700900123", "+447700900456", "+447700900789"
CURLY = "We\u2019ll be at the hand-in on Friday \u2013 see you there!"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():  # only reached in CI: there a missing browser is a failure
        pytest.fail("CI is set but /usr/bin/chromium is missing: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    headless=True, timeout=30_000)
        yield browser
        browser.close()


@dataclass
class Site:
    base: str
    app: Flask
    sessions: sessionmaker[Session]
    config: Config


@pytest.fixture
def site(settings: Settings, tmp_path: Path) -> Iterator[Site]:
    app_box: list[Flask] = []

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return app_box[0](environ, start_response)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    from webhooks import create_app

    # Over plain http the session cookie must not be Secure, or the browser drops it.
    app = create_app(dataclasses.replace(settings, public_base_url=base,
                                         secret_key="e2e-inbox-secret-key"))
    app.config.update(STAFF_CACHE_SECONDS=0,
                      STAFF_SIMULATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'simulator.db'}")
    app_box.append(app)
    rt = app.extensions["petitionbot"]
    add_people(rt.sessions)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="inbox-server", daemon=True)
    thread.start()
    try:
        yield Site(base, app, rt.sessions, rt.config)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        rt.engine.dispose()


@pytest.fixture
def open_page(chromium: Browser, site: Site) -> Iterator[Callable[[], Page]]:
    """A fresh browser profile (its own cookies) per call, on the site."""
    contexts = []

    def make() -> Page:
        context = chromium.new_context(base_url=site.base,
                                       viewport={"width": 1280, "height": 900},
                                       locale="en-GB", timezone_id="Europe/London")
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@dataclass
class Recorder:
    sent: list[Job] = field(default_factory=list)

    def send(self, job: Job) -> SendResult:
        self.sent.append(job)
        return SendResult(Result.SENT, provider_id=f"fake-{job.delivery_id}")


def send_outbox(site: Site) -> dict[str, Recorder]:
    """A real worker, until nothing is left to send."""
    senders = {c: Recorder() for c in ("sms", "whatsapp", "telegram")}
    awake = dataclasses.replace(site.config, broadcast=dataclasses.replace(
        site.config.broadcast, quiet_hours=None))
    BroadcastWorker(awake, site.sessions, senders).run(until_idle=True)
    return senders


def log_in(page: Page, email: str) -> None:
    page.goto("/staff/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))
    expect(page.locator(".who")).to_contain_text(email)


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True, timeout=WAIT_MS)


def rows(page: Page) -> list[int]:
    ids = page.locator("#conversations tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.conversation))")
    return [int(i) for i in ids]


def test_an_editor_replies_with_the_live_sms_preview_and_a_saved_reply(
        site: Site, open_page: Callable[[], Page]) -> None:
    question = waiting(site.sessions, AMIRA, "Is there a march? My mum wants to come.",
                       minutes_ago=30)
    flagged = waiting(site.sessions, BEN, "I can't cope any more", flagged=True,
                      minutes_ago=400)
    with site.sessions.begin() as session:
        session.add(SavedReply(title="Hand-in", text="The hand-in is on Friday at 10am.",
                               created_by=email_of("admin"),
                               created_at=dt.datetime.now(dt.UTC)))
    editor = open_page()
    log_in(editor, email_of("editor"))
    nav = editor.get_by_role("navigation", name="Console")
    expect(nav.locator("#inbox-waiting")).to_have_text("2")
    expect(editor.locator("#inbox-card .figure")).to_have_text("2")
    nav.get_by_role("link", name=re.compile("^Inbox")).click()
    expect(editor).to_have_url(re.compile(r"/staff/inbox$"))
    assert rows(editor) == [flagged, question]  # flagged first, then the newest waiting
    expect(editor.locator(f'tr[data-conversation="{flagged}"]')).to_have_class("flagged")
    screenshot(editor, "console-inbox.png")

    editor.get_by_role("link", name=f"#{question}", exact=True).click()
    expect(editor.locator("#thread")).to_contain_text("My mum wants to come.")
    box = editor.get_by_label("Reply", exact=True)
    box.click()
    box.press_sequentially(CURLY)
    preview = editor.locator("#reply-preview")
    folded = "We'll be at the hand-in on Friday - see you there!"
    expect(preview.locator("pre")).to_have_text(folded)
    expect(preview.locator(".sms-summary")).to_contain_text(
        f"{len(folded)} characters, not GSM-7, 1 segment(s). Estimated cost: £0.04")
    warning = preview.locator(".warning[role=alert]")
    expect(warning).to_contain_text("would force Unicode")
    expect(warning).to_contain_text("\u2019 (right single quotation mark) \u2192 '")

    # A saved reply fills the box (and the preview follows).
    editor.get_by_label("Saved replies").select_option(label="Hand-in")
    expect(box).to_have_value("The hand-in is on Friday at 10am.")
    expect(preview.locator("pre")).to_have_text("The hand-in is on Friday at 10am.")
    expect(preview.locator(".sms-summary")).to_contain_text("GSM-7, 1 segment(s)")
    screenshot(editor, "console-conversation.png")
    editor.get_by_role("button", name="Send the reply").click()
    expect(editor.locator(".flash")).to_contain_text("Reply queued")
    staff = editor.locator("#thread li.staff")
    expect(staff).to_contain_text("The hand-in is on Friday at 10am.")
    expect(staff.locator(".delivery")).to_have_text("queued")
    expect(nav.locator("#inbox-waiting")).to_have_text("1")

    sent = send_outbox(site)
    assert [(j.address, j.text) for j in sent["sms"].sent] == [
        (AMIRA, "The hand-in is on Friday at 10am.")]
    editor.reload()
    expect(editor.locator("#thread li.staff .delivery")).to_have_text("sent")


def test_an_editor_assigns_then_closes_a_conversation(
        site: Site, open_page: Callable[[], Page]) -> None:
    conversation = waiting(site.sessions, AMIRA, "Thank you for doing this")
    editor = open_page()
    log_in(editor, email_of("editor"))
    editor.goto(f"/staff/inbox/{conversation}")
    editor.get_by_role("button", name="Assign to me").click()
    expect(editor.locator(".flash")).to_contain_text("Assigned to you.")
    expect(editor.locator("#assignee")).to_have_text(f"assigned to {email_of('editor')}")
    expect(editor.get_by_role("button", name="Assign to me")).to_have_count(0)
    editor.goto("/staff/inbox")
    editor.get_by_role("navigation", name="Conversations").get_by_role(
        "link", name="Mine").click()
    assert rows(editor) == [conversation]

    editor.get_by_role("link", name=f"#{conversation}", exact=True).click()
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    editor.once("dialog", answer)
    editor.get_by_role("button", name="Close", exact=True).click()
    expect(editor).to_have_url(re.compile(r"/staff/inbox$"))
    expect(editor.locator(".flash")).to_contain_text(f"Conversation #{conversation} closed.")
    assert asked and asked[0].startswith("Close this conversation?")
    expect(editor.locator("main")).to_contain_text("Nobody is waiting for an answer.")
    editor.get_by_role("navigation", name="Conversations").get_by_role(
        "link", name="Closed").click()
    assert rows(editor) == [conversation]


def test_whatsapp_outside_the_window_cannot_be_answered(
        site: Site, open_page: Callable[[], Page]) -> None:
    conversation = waiting(site.sessions, CARYS, "Hello?", channel="whatsapp",
                           wrote_hours_ago=30)
    editor = open_page()
    log_in(editor, email_of("editor"))
    editor.goto(f"/staff/inbox/{conversation}")
    expect(editor.locator("#reach")).to_contain_text("24-hour window")
    expect(editor.locator("#reach")).to_contain_text("approved template")
    send = editor.get_by_role("button", name="Send the reply")
    expect(send).to_be_disabled()
    editor.get_by_label("Reply", exact=True).fill("Sorry for the wait")
    expect(editor.locator("#reply-preview")).to_contain_text(
        "Outside the 24-hour window: a reply cannot be sent without an approved template.")
    expect(send).to_be_disabled()


def test_a_viewer_reads_but_cannot_reply(site: Site, open_page: Callable[[], Page]) -> None:
    conversation = waiting(site.sessions, AMIRA, "Is there a march?")
    viewer = open_page()
    log_in(viewer, email_of("viewer"))
    viewer.get_by_role("navigation", name="Console").get_by_role(
        "link", name=re.compile("^Inbox")).click()
    viewer.get_by_role("link", name=f"#{conversation}", exact=True).click()
    expect(viewer.locator("#thread")).to_contain_text("Is there a march?")
    expect(viewer.locator("#read-only")).to_contain_text("editors and admins reply")
    expect(viewer.get_by_label("Reply", exact=True)).to_have_count(0)
    for label in ("Send the reply", "Assign to me", "Close", "Add the note"):
        expect(viewer.get_by_role("button", name=label, exact=True)).to_have_count(0)
    token = viewer.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    refused = viewer.request.post(f"{site.base}/staff/inbox/{conversation}/reply",
                                  form={"csrf_token": token, "text": "Yes"},
                                  max_redirects=0, timeout=WAIT_MS)
    assert refused.status == 403 and "needs the editor role" in refused.text()
    assert messages_of(site.sessions, conversation) == [("in", "Is there a march?")]
    with site.sessions() as session:
        assert session.scalar(select(Delivery.id)) is None
