"""Colleagues in a real browser: Playwright for Python driving Debian's chromium, headless,
against the app served by a real HTTP server on loopback (werkzeug, threaded).

Sam (an admin) invites Jo as an editor and copies the link; Jo opens it, chooses her name
and password, sets up two-factor sign-in with the key the page shows as text (codes from
pyotp, as her phone's app would make them), keeps her recovery codes, signs out, and signs
in again with her password and then a code. A screenshot of Jo's account page at 390 px
wide goes to test-artifacts/. Without /usr/bin/chromium the module is skipped, except in CI
(CI set), where that fails. Every wait is bounded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pyotp
import pytest
from sqlalchemy import select

from bot.infra.settings import Settings
from models import StaffUser
from tests.e2e.browser import (  # skips this module without chromium
    PHONE,
    Page,
    Site,
    expect,
    page_width,
    screenshot,
    send_code,
    send_login,
    served,
)
from tests.integration.console_helpers import add_people, email_of

pytestmark = pytest.mark.e2e

JO = "jo.bloggs@planets.example"
JO_PASSWORD = "a kettle, two mugs and a map"
CLIPBOARD = ["clipboard-read", "clipboard-write"]  # Sam copies the invitation link


@pytest.fixture
def site(settings: Settings) -> Iterator[Site]:
    # The invitation links are made on PUBLIC_BASE_URL, here the loopback server.
    with served(settings, secret_key="e2e-colleagues-secret-key") as site:
        add_people(site.sessions)
        yield site


def test_sam_invites_jo_who_joins_sets_up_two_factor_and_signs_in_with_a_code(
        site: Site, open_page: Callable[..., Page]) -> None:
    sam = open_page(permissions=CLIPBOARD)
    send_login(sam, email_of("admin"))
    sam.get_by_role("navigation", name="Console").get_by_role("link", name="Colleagues").click()
    expect(sam).to_have_url(re.compile(r"/staff/colleagues$"))
    sam.get_by_label("Their email address").fill(JO)
    sam.get_by_role("radio", name=re.compile(r"^Editor: ")).check()
    sam.get_by_role("button", name="Make an invitation link").click()
    link = sam.locator("#invite-link").input_value()
    assert link.startswith(site.base + "/staff/invite/")
    sam.get_by_role("button", name="Copy link").click()  # shown only where scripts run
    expect(sam.locator("button[data-copy]")).to_have_text("Copied")
    assert sam.evaluate("navigator.clipboard.readText()") == link
    expect(sam.get_by_role("table").last).to_contain_text(JO)  # waiting to be used

    jo = open_page(permissions=CLIPBOARD)
    jo.goto(link)
    expect(jo.get_by_role("heading", level=1)).to_contain_text("Join the")
    expect(jo.locator("main")).to_contain_text(JO)
    jo.get_by_label("Your name").fill("Jo Bloggs")
    jo.get_by_label("Choose a password").fill(JO_PASSWORD)
    jo.get_by_label("The same password again").fill(JO_PASSWORD)
    jo.get_by_role("button", name="Create your account").click()
    expect(jo).to_have_url(re.compile(r"/staff/account$"))
    expect(jo.locator(".flash")).to_contain_text("Welcome, Jo Bloggs")

    jo.get_by_role("link", name="Set up two-factor sign-in").click()
    expect(jo.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    totp = pyotp.TOTP(jo.locator("#totp-secret").inner_text().replace(" ", ""))
    jo.get_by_label("Code from the app").fill(totp.now())
    jo.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(jo.locator("#recovery-codes li")).to_have_count(10)
    jo.get_by_role("link", name=re.compile("I have kept them")).click()
    expect(jo.locator("#two-factor")).to_contain_text("On since")

    jo.get_by_role("button", name="Log out").click()
    expect(jo).to_have_url(re.compile(r"/staff/login$"))
    send_login(jo, JO, JO_PASSWORD)
    expect(jo).to_have_url(re.compile(r"/staff/login/code$"))
    expect(jo.locator(".who")).to_have_count(0)  # not signed in before the code
    # The next step's code: the one that turned two-factor on is spent (a code works once).
    send_code(jo, totp.at(time.time() + totp.interval))
    expect(jo).to_have_url(re.compile(r"/staff/$"))
    expect(jo.locator(".who")).to_contain_text(JO)

    jo.get_by_role("link", name="Your account").click()
    jo.set_viewport_size(PHONE)
    expect(jo.get_by_role("heading", name="Your account")).to_be_visible()
    assert page_width(jo) <= PHONE["width"], \
        "the account page fits a phone's width"
    screenshot(jo, "colleagues-account-390.png")

    sam.reload()
    row = sam.get_by_role("row", name=re.compile(re.escape(JO)))
    expect(row).to_contain_text("Jo Bloggs")
    expect(row).to_contain_text("on")
    with site.sessions() as session:
        joined = session.scalar(select(StaffUser).where(StaffUser.email == JO))
        assert joined is not None and (joined.role, joined.name) == ("editor", "Jo Bloggs")
        assert joined.totp_confirmed_at is not None
