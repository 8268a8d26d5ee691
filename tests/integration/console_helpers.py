"""A staff member's browser for the console tests: https, cookies, CSRF tokens read off
the page as a browser would have them, and people who sign through the real webhooks."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from bot.shell.staff import hash_password
from models import StaffUser
from tests.integration.twilio_helpers import Texter, signs

CONSOLE = "https://console.example.org"
PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
PEOPLE = {"viewer@planets.example": "viewer", "editor@planets.example": "editor",
          "admin@planets.example": "admin", "admin2@planets.example": "admin"}


@functools.cache
def password_hash() -> str:
    """One scrypt hash for every test account (hashing is slow on purpose)."""
    return hash_password(PASSWORD)


def add_people(sessions: sessionmaker[Session]) -> dict[str, int]:
    """The staff accounts every test may log in as: role -> id of the first of each."""
    ids: dict[str, int] = {}
    with sessions.begin() as session:
        for email, role in PEOPLE.items():
            user = StaffUser(email=email, password_hash=password_hash(), role=role,
                             active=True, created_at=dt.datetime.now(dt.UTC))
            session.add(user)
            session.flush()
            ids.setdefault(role, user.id)
    return ids


def email_of(role: str) -> str:
    return next(email for email, r in PEOPLE.items() if r == role)


def session_cookie(response: TestResponse) -> str:
    """The Set-Cookie header of the console's session (a sign-in sets a device cookie too)."""
    return next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))


@dataclass
class Browser:
    """One staff member's browser: every request over https, with their cookies."""

    client: FlaskClient
    ip: str = "192.0.2.10"
    csrf: bool = True  # False when the app runs with WTF_CSRF_ENABLED off

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(path, base_url=CONSOLE, environ_base={"REMOTE_ADDR": self.ip},
                               **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None, token: bool = True,
             **kwargs: Any) -> TestResponse:
        """POST a form; with `token`, the CSRF token the console's pages carry."""
        form = dict(data or {})
        if token and self.csrf:
            form["csrf_token"] = self.token()
        headers = {"Referer": CONSOLE + "/staff/", **kwargs.pop("headers", {})}
        return self.client.post(path, data=form, base_url=CONSOLE, headers=headers,
                                environ_base={"REMOTE_ADDR": self.ip}, **kwargs)

    def token(self) -> str:
        found = TOKEN.search(self.get("/staff/login").get_data(as_text=True))
        assert found, "the login page carries a CSRF token"
        return found.group(1)

    def login(self, email: str, password: str = PASSWORD) -> TestResponse:
        return self.post("/staff/login", {"email": email, "password": password})

    def json(self, path: str, data: dict[str, Any] | None = None) -> TestResponse:
        return self.post(path, data, headers={"Accept": "application/json"})


def signer(client: FlaskClient, number: str, name: str, postcode: str,
           channel: str = "sms", updates: str = "YES") -> Texter:
    """Someone who signs over SMS or WhatsApp through /twilio/messages."""
    texter = Texter(client, number, channel)
    signs(texter, name, postcode, updates)
    return texter
