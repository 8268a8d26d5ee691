"""Bot texts in a real browser: Playwright for Python driving Debian's chromium, headless,
against the app served by a real HTTP server on loopback (werkzeug, threaded).

An admin finds the greeting under Bot texts, previews a new wording (the SMS preview shows
it with sample details), saves it, and the simulator's next greeting says it. axe-core
finds nothing serious on the list or the editor, at desktop width or at 390 px, and the
editor at 390 px goes to test-artifacts/bot-text-editor-390.png.

Without /usr/bin/chromium the module is skipped, except in CI (CI set), where that fails.
Every wait is bounded (Playwright timeouts of at most 10 s).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.infra.settings import Settings
from tests.e2e.browser import (  # skips this module without chromium
    DESKTOP,
    PHONE,
    Page,
    Site,
    expect,
    page_width,
    screenshot,
    send_login,
    serious_violations,
    served,
)
from tests.integration.console_helpers import add_people, email_of

pytestmark = pytest.mark.e2e
GREETING = "Welcome to {organiser}'s petition:\n{title}\n{count} people have signed so far."


@pytest.fixture
def site(settings: Settings, tmp_path: Path) -> Iterator[Site]:
    """The console on a loopback server, with its staff accounts."""
    with served(settings, simulator=tmp_path / "simulator.db",
                secret_key="e2e-bot-texts-secret-key") as site:
        add_people(site.sessions)
        yield site


@pytest.fixture
def page(open_page: Callable[..., Page]) -> Page:
    """An admin signed in, in a fresh headless chromium."""
    opened = open_page()
    send_login(opened, email_of("admin"))
    expect(opened.locator(".who")).to_contain_text(email_of("admin"))
    return opened


def serious(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page, at desktop width and 390 px."""
    found = []
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        for violation in serious_violations(page):
            found.append(f"{size['width']} px: {violation['id']}: {violation['help']}")
        wide = page_width(page)
        if wide > size["width"] + 1:
            found.append(f"{size['width']} px: the page scrolls sideways ({wide} px)")
    page.set_viewport_size(DESKTOP)
    return found


def test_an_admin_rewords_the_greeting_and_the_simulator_says_it(page: Page) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Bot texts").click()
    expect(page.get_by_role("heading", name="Bot texts", level=1)).to_be_visible()
    assert serious(page) == []
    page.get_by_role("link", name="The first answer to anyone who writes").click()
    expect(page).to_have_url(re.compile(r"/staff/texts/greeting$"))

    page.get_by_role("textbox", name="Wording").fill(GREETING)
    page.get_by_role("button", name="Preview").click()
    sms = page.locator("#preview-sms")
    expect(sms).to_contain_text("Welcome to PLANETS Cancer Charity's petition:")
    expect(sms).to_contain_text("people have signed so far.")
    expect(sms).to_contain_text("GSM-7")
    assert serious(page) == []

    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("The bot says it from the next message on")
    expect(page.get_by_role("button", name="Reset to default")).to_be_visible()
    page.set_viewport_size(PHONE)
    screenshot(page, "bot-text-editor-390.png")
    page.set_viewport_size(DESKTOP)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Simulator").click()
    page.get_by_role("navigation", name="Channel").get_by_role("link", name="SMS").click()
    page.get_by_label("Your message").fill("Hi")
    page.locator("#say").get_by_role("button", name="Send").click()
    greeting = page.locator("#transcript li.bot").first
    expect(greeting).to_contain_text("Welcome to PLANETS Cancer Charity's petition:")
    expect(greeting).to_contain_text("people have signed so far.")
