"""The audit log page: what staff and the operator did, in sentences, in the charity's time
zone, filtered by who and by what, with no raw values or internal names on the page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.config import Config
from bot.shell import broadcast
from bot.shell.staff import OPERATOR, audit
from models import StaffUser
from tests.integration.console_helpers import Browser, add_people, email_of

WINTER = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)
SUMMER = dt.datetime(2026, 7, 15, 9, 30, tzinfo=dt.UTC)  # 10:30 in London


@pytest.fixture
def admin(app: Flask, sessions: sessionmaker[Session]) -> Browser:
    app.config.update(WTF_CSRF_ENABLED=False)
    add_people(sessions)
    with sessions.begin() as session:
        session.execute(update(StaffUser).where(StaffUser.email == email_of("admin"))
                        .values(name="Sam Patel"))
    b = Browser(app.test_client(), csrf=False)
    assert b.login(email_of("admin")).status_code == 302
    return b


def text_of(page: str) -> str:
    """The page's words, as a reader sees them."""
    inline = re.sub(r"</?a\b[^>]*>", "", page)
    return " ".join(re.sub(r"<[^>]+>", " ", inline).replace("&#39;", "'").split())


def test_sam_reads_what_happened_in_sentences(
        admin: Browser, sessions: sessionmaker[Session], config: Config) -> None:
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", "Thank you for signing: the "
                                 "hand-in is on Friday.", email_of("editor"), now=WINTER)
        audit(session, email_of("editor"), "announcement.create",
              f"announcement:{draft.id}", {"test_group": False, "template": None}, WINTER)
        audit(session, "cli:deploy", "staff.add", f"staff:{email_of('editor')}",
              {"role": "editor"}, WINTER)
        audit(session, OPERATOR, "staff.role", f"staff:{email_of('viewer')}",
              {"from": "viewer", "to": "editor"}, SUMMER)
    page = admin.get("/staff/audit").get_data(as_text=True)
    words = text_of(page)
    assert ("editor@planets.example (editor) drafted the announcement “Thank you for "
            "signing: the hand-in is on Friday.” for SIRT.") in words
    assert f'href="/staff/announcements/{draft.id}"' in page
    assert "Test group only no" in words and "WhatsApp template" not in words
    assert "The operator (command line) added editor editor@planets.example." in words
    assert ("The operator (command line) changed the role of viewer@planets.example from "
            "viewer to editor.") in words
    assert "Sam Patel (admin) signed in." in words
    assert "15 Jul 2026 10:30" in words and "15 Jan 2026 09:30" in words
    assert not re.search(r"\b(True|False|None)\b|cli:|announcement\.create|staff\.role",
                         words)


def test_the_log_is_filtered_by_who_and_by_what_in_words(
        admin: Browser, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        audit(session, email_of("editor"), "inbox.close", "conversation:7", None, WINTER)
        audit(session, "cli:deploy", "token.revoke", "token:3", None, WINTER)
        audit(session, "stranger@example.org", "login.failed", None, {"address": "ab"},
              WINTER)
    page = admin.get("/staff/audit").get_data(as_text=True)
    assert '<option value="cli:deploy" >The operator (command line)</option>' in page
    assert '<option value="inbox.close" >Conversation closed</option>' in page
    assert "stranger@example.org</option>" not in page  # anyone may type at the login
    by_editor = text_of(admin.get("/staff/audit", query_string={
        "actor": email_of("editor")}).get_data(as_text=True))
    assert "1 entry; page 1 of 1." in by_editor
    assert "editor@planets.example (editor) closed conversation 7." in by_editor
    refused = text_of(admin.get("/staff/audit", query_string={
        "action": "login.failed"}).get_data(as_text=True))
    assert "1 entry; page 1 of 1." in refused
    assert ("A sign-in as stranger@example.org was refused: the email and password did "
            "not match.") in refused

