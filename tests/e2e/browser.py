"""What the browser tests share: Debian's chromium driven by Playwright for Python, the app
served on loopback by a real, threaded werkzeug server, fresh browser profiles, signing in
through the login form, screenshots in test-artifacts/ and axe-core's findings.

Importing this module skips the importing test module when /usr/bin/chromium is missing,
except in CI (CI set), where the `chromium` fixture (tests/e2e/conftest.py) fails instead.
Playwright's names the tests use come from here too, so that nothing of Playwright is
imported before that skip. Every wait is bounded: WAIT_MS unless a test asks for another.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from bot.entry.worker import BroadcastWorker
from bot.infra.config import Config
from bot.infra.settings import Settings
from models import Signature
from models.db import make_engine, make_sessions
from tests.conftest import ROOT
from tests.integration.console_helpers import PASSWORD
from tests.integration.twilio_helpers import PATH, replies, sign, sms_payload, whatsapp_payload

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 10_000  # every Playwright action, navigation and expectation, unless asked otherwise
IN_CI = bool(os.environ.get("CI"))

if not CHROMIUM.exists() and not IN_CI:
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
                allow_module_level=True)

from axe_playwright_python.sync_playwright import Axe  # noqa: E402  (after the skip)
from playwright.sync_api import (  # noqa: E402  (after the skip: only with a browser)
    Browser,
    Dialog,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError  # noqa: E402

__all__ = [
    "ARTIFACTS", "DESKTOP", "PHONE", "WAIT_MS", "Browser", "Dialog", "Page", "PlaywrightError",
    "Site", "ViewportSize", "csrf_token", "expect", "launched", "log_in", "new_page",
    "page_width", "quiet_hours_off", "running_worker", "save_screenshot", "screenshot",
    "send_code", "send_login", "serious_violations", "served",
]

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
expect.set_options(timeout=WAIT_MS)


# The browser -------------------------------------------------------------------------------

@contextmanager
def launched() -> Iterator[Browser]:
    """Debian's chromium, headless."""
    if not CHROMIUM.exists():  # only reached in CI: there a missing browser is a failure
        pytest.fail("CI is set but /usr/bin/chromium is missing: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    headless=True, timeout=30_000)
        yield browser
        browser.close()


def new_page(browser: Browser, base: str, viewport: ViewportSize = DESKTOP,
             timeout: int = WAIT_MS, permissions: Sequence[str] = ()) -> Page:
    """A page in a fresh browser profile (its own cookies) on `base`, in English and London
    time, every action and navigation waiting at most `timeout` ms. Close its context."""
    context = browser.new_context(base_url=base, viewport=viewport, locale="en-GB",
                                  timezone_id="Europe/London")
    if permissions:
        context.grant_permissions(list(permissions), origin=base)
    context.set_default_timeout(timeout)
    context.set_default_navigation_timeout(timeout)
    return context.new_page()


# The app on loopback -----------------------------------------------------------------------

@dataclass
class Site:
    """The app behind a real server on loopback."""

    base: str
    app: Flask
    sessions: sessionmaker[Session]
    config: Config

    def sign_up(self, number: str, name: str, postcode: str, channel: str = "sms",
                updates: str = "YES") -> None:
        """Someone signs over SMS or WhatsApp through /twilio/messages, signed by Twilio."""
        client = self.app.test_client()
        for body in ("Hi", "SIGN", "YES", name, postcode, "YES", updates):
            params = (whatsapp_payload(number, body) if channel == "whatsapp"
                      else sms_payload(number, body))
            response = client.post(PATH, data=params, base_url=self.base, headers={
                "X-Twilio-Signature": sign(params, url=self.base + PATH)})
            assert response.status_code == 200, response.get_data(as_text=True)

    def text(self, number: str, body: str) -> list[str]:
        """`number` texts the bot (a webhook signed as Twilio signs it): the bot's replies."""
        params = sms_payload(number, body)
        return replies(self.app.test_client().post(
            PATH, data=params, base_url=self.base,
            headers={"X-Twilio-Signature": sign(params, url=self.base + PATH)}))

    def here(self) -> int:
        """Signatures in the live database."""
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Signature)) or 0


@contextmanager
def served(settings: Settings, simulator: Path | None = None, **changes: Any) -> Iterator[Site]:
    """The app (`settings` with `changes`) behind a real, threaded werkzeug server on a free
    loopback port, which is its PUBLIC_BASE_URL: over plain http, so the session cookie is
    not Secure (the browser would drop it), and the links the app makes point at it. Staff
    pages are not cached; with `simulator`, the simulator keeps its database in that file."""
    app_box: list[Flask] = []

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return app_box[0](environ, start_response)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    from webhooks import create_app

    app = create_app(dataclasses.replace(settings, public_base_url=base, **changes))
    app.config.update(STAFF_CACHE_SECONDS=0)
    if simulator is not None:
        app.config.update(STAFF_SIMULATOR_DATABASE_URL=f"sqlite:///{simulator}")
    app_box.append(app)
    rt = app.extensions["petitionbot"]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="e2e-server", daemon=True)
    thread.start()
    try:
        yield Site(base, app, rt.sessions, rt.config)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        rt.engine.dispose()


def quiet_hours_off(config: Config) -> Config:
    return dataclasses.replace(config, broadcast=dataclasses.replace(
        config.broadcast, quiet_hours=None))


@contextmanager
def running_worker(config: Config, database_url: str, senders: dict[str, Any],
                   name: str) -> Iterator[BroadcastWorker]:
    """A real BroadcastWorker on `config`, on its own engine, running in a thread."""
    engine = make_engine(database_url)
    running = BroadcastWorker(config, make_sessions(engine), senders)
    thread = threading.Thread(target=running.run, name=name, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.stop()
        thread.join(30)
        engine.dispose()
    assert not thread.is_alive(), "the worker did not stop within 30 s"


# Signing in --------------------------------------------------------------------------------

def send_login(page: Page, email: str, password: str = PASSWORD) -> None:
    """Fill in the sign-in form and send it; what comes next is the caller's to check."""
    page.goto("/staff/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_in(page: Page, email: str) -> None:
    """Sign in with the staff password: the console's front page says who is signed in."""
    send_login(page, email)
    expect(page).to_have_url(re.compile(r"/staff/$"))
    expect(page.locator(".who")).to_contain_text(email)


def send_code(page: Page, code: str) -> None:
    """The two-factor step after the password: a code from the authenticator app."""
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign in").click()


def csrf_token(page: Page) -> str:
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    return token


# What the page looks like ------------------------------------------------------------------

def page_width(page: Page) -> int:
    """How wide the page is drawn: wider than the viewport means it scrolls sideways."""
    width: int = page.evaluate("document.documentElement.scrollWidth")
    return width


def save_screenshot(page: Page, name: str, timeout: int = WAIT_MS) -> Path:
    """A full-page screenshot to test-artifacts/`name` (which may start with a folder)."""
    path = ARTIFACTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True, timeout=timeout)
    return path


def screenshot(page: Page, name: str, timeout: int = WAIT_MS) -> Path:
    """save_screenshot, and the file is not blank."""
    path = save_screenshot(page, name, timeout)
    assert path.stat().st_size > 10_000, f"{name} looks blank"
    return path


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    return [v for v in Axe().run(page).response["violations"]
            if v["impact"] in ("serious", "critical")]
