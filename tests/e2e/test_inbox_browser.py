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

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.core.outcomes import Job, Result, SendResult
from bot.entry.worker import BroadcastWorker
from bot.infra.settings import Settings
from models import Delivery, SavedReply
from tests.e2e.browser import (  # skips this module without chromium
    WAIT_MS,
    Dialog,
    Page,
    Site,
    csrf_token,
    expect,
    log_in,
    quiet_hours_off,
    save_screenshot,
    served,
)
from tests.integration.console_helpers import add_people, email_of
from tests.integration.inbox_helpers import messages_of, waiting

pytestmark = pytest.mark.e2e

AMIRA, BEN, CARYS = "+447700900123", "+447700900456", "+447700900789"
CURLY = "We\u2019ll be at the hand-in on Friday \u2013 see you there!"


@pytest.fixture
def site(settings: Settings, tmp_path: Path) -> Iterator[Site]:
    with served(settings, simulator=tmp_path / "simulator.db",
                secret_key="e2e-inbox-secret-key") as site:
        add_people(site.sessions)
        yield site


@dataclass
class Recorder:
    sent: list[Job] = field(default_factory=list)

    def send(self, job: Job) -> SendResult:
        self.sent.append(job)
        return SendResult(Result.SENT, provider_id=f"fake-{job.delivery_id}")


def send_outbox(site: Site) -> dict[str, Recorder]:
    """A real worker, until nothing is left to send."""
    senders = {c: Recorder() for c in ("sms", "whatsapp", "telegram")}
    BroadcastWorker(quiet_hours_off(site.config), site.sessions, senders).run(until_idle=True)
    return senders


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
    save_screenshot(editor, "console-inbox.png")

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
    save_screenshot(editor, "console-conversation.png")
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
    token = csrf_token(viewer)
    refused = viewer.request.post(f"{site.base}/staff/inbox/{conversation}/reply",
                                  form={"csrf_token": token, "text": "Yes"},
                                  max_redirects=0, timeout=WAIT_MS)
    assert refused.status == 403 and "needs the editor role" in refused.text()
    assert messages_of(site.sessions, conversation) == [("in", "Is there a march?")]
    with site.sessions() as session:
        assert session.scalar(select(Delivery.id)) is None
