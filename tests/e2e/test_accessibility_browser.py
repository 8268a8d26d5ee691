"""Every console page, for everyone and on a phone: axe-core (axe-playwright-python, its
script bundled, no network) in Debian's chromium, at desktop width and at 390 px.

The pages are not listed here: they are every GET route of the console in the app's
url_map (webhooks/console/access.py's `route` registry), so a page added later is checked
without anyone remembering to. JSON and CSV downloads are left out; routes with ids get
the ids of rows this test made; public pages (sign-in, its code step, an invitation) are
visited signed out, error pages (404, 403) too. Each page is visited as an admin, and the
pages a viewer may open also as a viewer.

A page passes when axe finds no serious or critical violation at either width, and at
390 px the page does not scroll sideways (its own boxes may). A full-page screenshot at
390 px of each goes to test-artifacts/screenshots-390/, with report.txt listing every page
checked and how. Every wait is bounded (Playwright timeouts of at most 15 s).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import url_for
from sqlalchemy import select, update
from werkzeug.routing import Rule

from bot.infra.settings import Settings
from bot.shell import api_tokens, broadcast, event_receivers, events, invites
from bot.shell import inbox as inbox_shell
from models import Identity, Petition, StaffUser, Voice
from models.tables import event_deliveries
from tests.e2e.browser import (  # skips this module without chromium
    ARTIFACTS,
    DESKTOP,
    PHONE,
    Browser,
    Page,
    PlaywrightError,
    Site,
    new_page,
    page_width,
    save_screenshot,
    send_code,
    send_login,
    serious_violations,
    served,
)
from tests.integration.console_helpers import add_people, email_of
from tests.integration.inbox_helpers import waiting
from webhooks.console.access import ROLES

SHOTS = "screenshots-390"  # in test-artifacts/
WAIT_MS = 15_000
DOWNLOADS = (".json", ".csv")

pytestmark = pytest.mark.e2e
SIGNERS = [("+447700900201", "Amira Khan", "EH1 1AA"), ("+447700900202", "Ben Jones", "CF10 1AA")]


@dataclass
class FilledSite(Site):
    """The app behind a real server on loopback, and the rows the pages are shown with."""

    totp: str  # the admin's authenticator secret
    ids: dict[str, Any] = field(default_factory=dict)  # route parameter -> a value


@dataclass
class Findings:
    """What every visit found; the test fails on any problem, listing them all."""

    problems: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)


@pytest.fixture
def site(settings: Settings) -> Iterator[FilledSite]:
    with served(settings, secret_key="e2e-accessibility-secret-key") as served_site:
        made = FilledSite(served_site.base, served_site.app, served_site.sessions,
                          served_site.config, pyotp.random_base32())
        add_people(made.sessions)
        fill(made)
        yield made


def fill(site: FilledSite) -> None:
    """Rows for every page to show: signers, a voice, a conversation waiting, a draft and
    an approved announcement, an API token, a saved reply, an invitation; and the admin
    signs in with two-factor, as admins must."""
    for number, name, postcode in SIGNERS:
        site.sign_up(number, name, postcode)
    conversation = waiting(site.sessions, "+447700900299",
                           "When is the petition being handed in, and can I come along?")
    now = dt.datetime.now(dt.UTC)
    config = site.app.extensions["petitionbot"].config
    with site.sessions.begin() as session:
        staff = {role: session.scalars(select(StaffUser).where(
            StaffUser.email == email_of(role))).one() for role in ("editor", "admin")}
        staff["admin"].totp_secret, staff["admin"].totp_confirmed_at = site.totp, now
        supporter = session.scalar(select(Identity.supporter_id).where(
            Identity.address == SIGNERS[0][0]))
        petition = session.scalar(select(Petition.id).where(Petition.slug == "sirt"))
        assert supporter is not None and petition is not None
        voice = Voice(petition_id=petition, supporter_id=supporter, status="pending",
                      text="My dad was treated with SIRT and it gave us two more years.",
                      publish_consent=True, created_at=now)
        session.add(voice)
        draft = broadcast.create(session, config, "sirt", "Thank you all: the hand-in is on "
                                 "Friday at 11.", email_of("editor"), now=now)
        sending = broadcast.create(session, config, "sirt", "We have passed 50,000 "
                                   "signatures. Thank you!", email_of("editor"), now=now)
        broadcast.approve(session, config, sending, email_of("admin"), now)
        token = api_tokens.issue(session, staff["admin"], "CRM sync", now)
        reply = inbox_shell.save_reply(session, staff["editor"], "Hand-in date",
                                       "The hand-in is on Friday at 11.", now)
        invitation = invites.invite(session, "new.colleague@planets.example", "editor",
                                    staff["admin"], now)
        receiver, _ = event_receivers.add(session, "http://127.0.0.1:9/crm/petitionbot",
                                          list(events.TYPES), email_of("admin"), config.api,
                                          now)
        events.record(session.connection(), events.PING, {"receiver": receiver.id}, None,
                      now, receiver_id=receiver.id)
        session.execute(update(event_deliveries).values(  # parked: "Send again" shows
            status="failed", attempts=17, failed_at=now, last_answer="HTTP 503"))
        session.flush()
        site.ids.update(
            receiver_id=receiver.id, announcement_id=draft.id, conversation_id=conversation,
            supporter_id=supporter,
            voice_id=voice.id, token_id=token.id, reply_id=reply, token=invitation.token,
            slug="sirt", channel="sms", key="consent")


# Pages ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Visit:
    name: str   # for the report and the screenshot's file
    path: str
    role: str   # who visits: "public", "viewer" or "admin"


def console_pages(site: FilledSite, findings: Findings) -> list[Visit]:
    """Every GET page of the console, as the roles that may open it."""
    visits = []
    with site.app.test_request_context(base_url=site.base):
        for rule in sorted(site.app.url_map.iter_rules(), key=lambda r: r.rule):
            if not rule.endpoint.startswith("staff.") or rule.endpoint == "staff.static":
                continue
            if "GET" not in (rule.methods or ()):
                continue
            if rule.rule.endswith(DOWNLOADS):
                findings.report.append(f"left out (a download): {rule.rule}")
                continue
            missing = [a for a in rule.arguments if a not in site.ids]
            if missing:
                findings.problems.append(f"{rule.rule}: not checked, no row made for "
                                         f"{', '.join(missing)} (add one in fill())")
                continue
            path = url_for(rule.endpoint, **{a: site.ids[a] for a in rule.arguments})
            visits += _as_roles(rule, path)
    return visits


def _as_roles(rule: Rule, path: str) -> list[Visit]:
    name = rule.endpoint.removeprefix("staff.")
    role = ROLES.get(rule.endpoint, "admin")
    if role == "public":
        return [Visit(name, path, "public")]
    if role == "viewer":
        return [Visit(name, path, "admin"), Visit(f"{name}-viewer", path, "viewer")]
    return [Visit(name, path, "admin")]


# The outermost elements reaching past the right edge, named as a selector would.
TOO_WIDE = """[...document.querySelectorAll('body *')].filter(e => {
    const box = e.getBoundingClientRect();
    const parent = e.parentElement.getBoundingClientRect();
    return box.right > innerWidth + 1 && parent.right <= innerWidth + 1;
}).slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
    + [...e.classList].map(c => '.' + c).join(''))"""
ERRORS = [Visit("error-404", f"/staff/announcements/{2**62}", "admin"),
          Visit("error-403", "/staff/audit", "viewer")]


# The browser ---------------------------------------------------------------------------

def signed_in(chromium: Browser, site: FilledSite, role: str, findings: Findings) -> Page:
    """A fresh browser profile signed in as `role` (the admin through the code step)."""
    page = new_page(chromium, site.base, DESKTOP, timeout=WAIT_MS)
    if role == "public":
        return page
    send_login(page, email_of(role))
    page.wait_for_url(lambda url: not url.endswith("/staff/login"))
    if "/staff/login/code" in page.url:
        check(page, Visit("login_code-admin", "/staff/login/code", role), findings)
        page.set_viewport_size(DESKTOP)
        send_code(page, pyotp.TOTP(site.totp).now())
        page.wait_for_url(lambda url: "/staff/login" not in url)
    assert email_of(role) in page.locator(".who").inner_text(), f"{role} is not signed in"
    return page


def check(page: Page, visit: Visit, findings: Findings) -> None:
    """axe at desktop width and at 390 px, the page's width at 390 px, a screenshot."""
    asked = f"{visit.path} as {visit.role}"
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        for violation in serious_violations(page):
            where = "; ".join(" ".join(n["target"]) for n in violation["nodes"][:5])
            findings.problems.append(
                f"{asked} at {size['width']} px: {violation['id']} ({violation['impact']})"
                f": {violation['help']} at {where}")
    wide = page_width(page)
    if wide > PHONE["width"] + 1:
        findings.problems.append(f"{asked}: scrolls sideways at 390 px ({wide} px wide; "
                                 f"too wide: {', '.join(page.evaluate(TOO_WIDE))})")
    save_screenshot(page, f"{SHOTS}/{visit.name}.png", WAIT_MS)
    shown = urlsplit(page.url).path
    findings.report.append(f"checked: {asked}" + ("" if shown == visit.path else
                                                  f" (it showed {shown})"))


def test_every_console_page_is_accessible_at_desktop_width_and_on_a_phone(
        site: FilledSite, chromium: Browser) -> None:
    findings = Findings()
    pages: dict[str, Page] = {}
    visits = console_pages(site, findings)
    assert len(visits) > 10, "the console's pages were not found in the url_map"
    for visit in [v for v in visits if v.role == "public"] + ERRORS + [
            v for v in visits if v.role != "public"]:
        if visit.role not in pages:
            pages[visit.role] = signed_in(chromium, site, visit.role, findings)
        page = pages[visit.role]
        page.set_viewport_size(DESKTOP)
        try:
            response = page.goto(visit.path)
            assert response is not None
            if response.status >= 400 and not visit.name.startswith("error"):
                findings.problems.append(f"{visit.path} as {visit.role}: {response.status}")
            check(page, visit, findings)
        except PlaywrightError as error:  # one broken page must not hide the others
            findings.problems.append(f"{visit.path} as {visit.role}: not checked: "
                                     f"{error.message.splitlines()[0]}")
    for page in pages.values():
        page.context.close()
    report = ARTIFACTS / SHOTS / "report.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(findings.report + findings.problems) + "\n")
    assert not findings.problems, "\n".join(findings.problems)
