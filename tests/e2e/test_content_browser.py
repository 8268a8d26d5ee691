"""Petitions' content in a real browser (Playwright for Python driving Debian's chromium,
headless), against the app behind a real HTTP server on loopback:

- an editor changes the petition's summary, watching the preview follow as they type, and
  the simulator's next greeting shows it;
- an admin updates the Change.org count, and the dashboard and the public JSON follow;
- the petition editor at 390 px wide, with its preview, is a screenshot in test-artifacts/.

Without /usr/bin/chromium the module is skipped, except in CI (CI set), where that fails.
Every wait is bounded (Playwright timeouts of at most 10 s).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.infra.settings import Settings
from tests.e2e.browser import (  # skips this module without chromium
    Page,
    Site,
    expect,
    page_width,
    screenshot,
    send_login,
    served,
)
from tests.integration.console_helpers import add_people, email_of

NEW_SUMMARY = "NHS England funds SIRT for liver cancer but not for NET patients. Ask them " \
              "to fund it for everyone who needs it."

pytestmark = pytest.mark.e2e


@pytest.fixture
def site(settings: Settings, tmp_path: Path) -> Iterator[Site]:
    """The app behind a real, threaded server on loopback, with a sandbox of its own."""
    with served(settings, simulator=tmp_path / "simulator.db",
                secret_key="e2e-content-secret-key") as site:
        add_people(site.sessions)
        yield site


def log_in(page: Page, email: str) -> None:
    send_login(page, email)
    expect(page).to_have_url(re.compile(r"/staff/$"))


def open_editor(page: Page) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link",
                                                                name="Petitions").click()
    expect(page).to_have_url(re.compile(r"/staff/petitions$"))
    page.locator("#petitions").get_by_role("link", name=re.compile("Ensure access")).click()
    expect(page).to_have_url(re.compile(r"/staff/petitions/sirt/edit$"))


def greeting(page: Page) -> str:
    """The simulator's answer to a newcomer's Hi, by SMS."""
    page.goto("/staff/simulator?channel=sms")
    page.get_by_role("button", name="Start again as a new supporter").click()
    page.get_by_label("Your message").fill("Hi")
    page.get_by_role("button", name="Send", exact=True).click()
    bot = page.locator("#transcript li.bot").first
    expect(bot).to_contain_text("people have signed")
    return bot.inner_text()


def test_an_editor_changes_the_summary_and_the_simulators_next_greeting_shows_it(
        site: Site, open_page: Callable[..., Page]) -> None:
    editor = open_page()
    log_in(editor, email_of("editor"))
    assert site.config.petition("sirt").summary in greeting(editor)

    editor.goto("/staff/")
    open_editor(editor)
    summary = editor.get_by_label("Summary")
    summary.fill("")
    summary.press_sequentially(NEW_SUMMARY[:40])
    # The preview follows as they type, before anything is saved.
    expect(editor.locator("#preview-sms article").first).to_contain_text(NEW_SUMMARY[:40])
    summary.fill(NEW_SUMMARY)
    editor.get_by_role("button", name="Save", exact=True).click()
    expect(editor.locator(".flash")).to_contain_text("Saved as version 2")
    expect(editor.get_by_label("Summary")).to_have_value(NEW_SUMMARY)

    assert NEW_SUMMARY in greeting(editor)

    editor.goto("/staff/petitions/sirt/history")
    expect(editor.locator("#version-2")).to_contain_text(email_of("editor"))
    expect(editor.locator("#version-2")).to_contain_text(NEW_SUMMARY)


def test_an_admin_updates_the_change_org_count_and_the_dashboard_and_public_json_follow(
        site: Site, open_page: Callable[..., Page]) -> None:
    admin = open_page()
    log_in(admin, email_of("admin"))
    expect(admin.locator(".card.big")).to_contain_text("49,257 on Change.org")
    open_editor(admin)
    admin.get_by_label("Signatures there, row 1").fill("52,400")
    admin.get_by_label("As of, row 1").fill("2026-12-04")
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.locator(".flash")).to_contain_text("Saved as version 2")

    admin.get_by_role("link", name="Dashboard").first.click()
    expect(admin.locator(".card.big")).to_contain_text("52,400 on Change.org")
    expect(admin.locator(".card.big .figure")).to_have_text("52,400")

    admin.goto("/api/petitions/sirt")
    counts = json.loads(admin.locator("body").inner_text())["counts"]
    assert counts["total"] == 52_400
    assert counts["external"] == [{"source": "Change.org", "count": 52_400}]


def test_the_petition_editor_at_390_px(site: Site, open_page: Callable[..., Page]) -> None:
    phone = open_page(viewport={"width": 390, "height": 900})
    log_in(phone, email_of("editor"))
    phone.goto("/staff/petitions/sirt/edit")
    expect(phone.locator("#preview-sms article").first).to_contain_text("people have signed")
    wide = page_width(phone)
    assert wide <= 390, f"the editor scrolls sideways at 390 px ({wide} px wide)"
    screenshot(phone, "console-petition-editor-390.png")
