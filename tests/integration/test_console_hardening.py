"""The console's hardening (DESIGN §8): a second approval that no staff path can get round,
sign-ins that end at logout and 12 hours after sign-in on every process, a login throttle
kept in the database (exact under a burst, no lockout of the real person by a stranger,
no Redis needed), and URLs that are a 404 or a plain redirect, never a 500 or 503."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell import broadcast, throttle
from bot.shell.service import Service
from models import Announcement, AuditEntry, Delivery, RateWindow, StaffSession
from tests.conftest import together
from tests.integration.console_helpers import (
    PASSWORD,
    Browser,
    add_people,
    email_of,
    session_cookie,
)
from tests.integration.test_console import (
    api_counts,
    browser,
    console_setup,
    draft_by,
    status_of,
    write_config,
)
from tests.integration.twilio_helpers import Texter, signs

DOMAIN = "console.example.org"
HUGE = "99999999999999999999"  # 20 digits: more than any database integer holds
SEEN = re.compile(r'name="seen" type="hidden" value="([0-9a-f]+)"')


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(settings, config_path=str(write_config(tmp_path)))


@pytest.fixture
def app(app: Flask, tmp_path: Path) -> Flask:
    return console_setup(app, tmp_path)


@pytest.fixture
def staff_ids(sessions: sessionmaker[Session], app: Flask) -> dict[str, int]:
    return add_people(sessions)


@pytest.fixture
def subscriber(app: Flask) -> None:
    """One person who wants updates, so an approved announcement has someone to go to."""
    signs(Texter(app.test_client(), "+447700900123"), "Amira Khan", "EH1 1AA", "YES")
    assert api_counts(app.test_client())["here"] == 1


def flashed(b: Browser, response: Any) -> str:
    """The page a redirect leads to (where the flash message shows)."""
    return b.get(response.headers["Location"]).get_data(as_text=True)


def admin2() -> str:
    return "admin2@planets.example"


def audit_of(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    """(actor, action) of every audit entry, oldest first."""
    with sessions() as session:
        return [(e.actor, e.action) for e in session.scalars(
            select(AuditEntry).order_by(AuditEntry.id))]


# 1. The second approval, on every path ------------------------------------------------------

def test_an_admin_who_edited_a_draft_cannot_approve_it(
        app: Flask, staff_ids: dict[str, int], subscriber: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    admin, other = browser(app, "admin"), browser(app)
    other.login(admin2())
    draft = draft_by(sessions, config, email_of("editor"))
    edited = admin.post(f"/staff/announcements/{draft}/edit",
                        {"text": "Donate to this account instead: 12345678."})
    assert edited.status_code == 302
    with sessions() as session:
        found = session.get(Announcement, draft)
        assert found is not None
        assert (found.created_by, found.edited_by) == (email_of("editor"), email_of("admin"))
    page = admin.get(f"/staff/announcements/{draft}").get_data(as_text=True)
    assert "You last edited this announcement: another admin must approve it." in page
    assert 'class="approve"' not in page
    refused = admin.post(f"/staff/announcements/{draft}/approve", {"when": "now"})
    assert refused.status_code == 303
    assert ("You last edited this announcement, so another staff member must approve it."
            in flashed(admin, refused))
    assert status_of(sessions, draft) == "draft"
    assert other.post(f"/staff/announcements/{draft}/approve",
                      {"when": "now", "confirm": "yes"}).status_code == 303  # at any hour
    with sessions() as session:
        found = session.get(Announcement, draft)
        assert found is not None and (found.status, found.approved_by) == (
            "sending", admin2())


def test_nothing_is_sent_before_a_second_admin_approves(
        app: Flask, staff_ids: dict[str, int], subscriber: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    """The whole bypass, end to end: admin rewrites the editor's draft and tries to send."""
    admin = browser(app, "admin")
    draft = draft_by(sessions, config, email_of("editor"))
    admin.post(f"/staff/announcements/{draft}/edit", {"text": "Something else."})
    admin.post(f"/staff/announcements/{draft}/approve", {"when": "now"})
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_changing_only_the_audience_is_an_edit_too(
        app: Flask, staff_ids: dict[str, int], config: Config,
        sessions: sessionmaker[Session]) -> None:
    admin = browser(app, "admin")
    text = "The petition goes to NHS England next week."
    draft = draft_by(sessions, config, email_of("editor"), text)
    admin.post(f"/staff/announcements/{draft}/edit", {"text": text, "channels": ["sms"]})
    admin.post(f"/staff/announcements/{draft}/approve", {"when": "now"})
    assert status_of(sessions, draft) == "draft"


def test_saving_a_draft_unchanged_does_not_make_you_its_last_editor(
        app: Flask, staff_ids: dict[str, int], config: Config,
        sessions: sessionmaker[Session]) -> None:
    admin, other = browser(app, "admin"), browser(app)
    other.login(admin2())
    draft = draft_by(sessions, config, email_of("editor"))
    admin.post(f"/staff/announcements/{draft}/edit", {"text": "Admin's own words."})
    # The second admin opens the editor and saves without changing anything: the first
    # admin is still the last editor, and still may not approve their words alone.
    unchanged = other.post(f"/staff/announcements/{draft}/edit", {"text": "Admin's own words."})
    assert "Nothing was changed." in flashed(other, unchanged)
    with sessions() as session:
        found = session.get(Announcement, draft)
        assert found is not None and found.edited_by == email_of("admin")
    admin.post(f"/staff/announcements/{draft}/approve", {"when": "now"})
    assert status_of(sessions, draft) == "draft"
    edits = [e for e in audit_of(sessions) if e[1] == "announcement.edit"]
    assert edits == [(email_of("admin"), "announcement.edit")]


def test_an_approval_names_the_version_the_admin_saw(
        app: Flask, staff_ids: dict[str, int], config: Config,
        sessions: sessionmaker[Session]) -> None:
    editor, admin = browser(app, "editor"), browser(app, "admin")
    draft = draft_by(sessions, config, email_of("editor"))
    page = admin.get(f"/staff/announcements/{draft}").get_data(as_text=True)
    seen = SEEN.search(page)
    assert seen, "the approve form carries the version shown"
    # The editor changes the text while the admin reads the old one.
    editor.post(f"/staff/announcements/{draft}/edit", {"text": "Something else entirely."})
    stale = admin.post(f"/staff/announcements/{draft}/approve",
                       {"when": "now", "seen": seen.group(1)})
    assert "has changed since you saw it" in flashed(admin, stale)
    assert status_of(sessions, draft) == "draft"
    fresh = SEEN.search(admin.get(f"/staff/announcements/{draft}").get_data(as_text=True))
    assert fresh and fresh.group(1) != seen.group(1)
    admin.post(f"/staff/announcements/{draft}/approve",
               {"when": "now", "seen": fresh.group(1), "confirm": "yes"})  # at any hour
    assert status_of(sessions, draft) == "sending"


def test_approve_itself_refuses_the_author_and_the_last_editor(
        config: Config, sessions: sessionmaker[Session], service: Service) -> None:
    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", "Hello all", "a@x.example", now=now)
        with pytest.raises(broadcast.ApprovalRefused, match="you wrote this announcement"):
            broadcast.approve(session, config, draft, "A@X.example", now)
        assert broadcast.edit(session, draft, "Hello everyone", broadcast.Audience(),
                              "b@x.example")
        with pytest.raises(broadcast.ApprovalRefused, match="you last edited"):
            broadcast.approve(session, config, draft, "b@x.example", now)
        # A copy for the staff test group reaches staff only: its sender may send it.
        test = broadcast.create(session, config, "sirt", "Hello all", "a@x.example",
                                broadcast.Audience(test_group=True), now=now)
        broadcast.approve(session, config, test, "a@x.example", now)
        # Without the rule (config), or for the operator's command line, it is allowed.
        relaxed = dataclasses.replace(config, console=dataclasses.replace(
            config.console, require_second_approval=False))
        broadcast.approve(session, relaxed, draft, "b@x.example", now)
        assert draft.status == "sending"
        mine = broadcast.create(session, config, "sirt", "Mine", "cli:ops", now=now)
        broadcast.approve(session, config, mine, "cli:ops", now, operator=True)
        assert mine.status == "sending"


def test_the_operator_command_line_still_approves_its_own_drafts(
        settings: Settings, sessions: sessionmaker[Session], app: Flask) -> None:
    from bot.entry.cli import main

    env = {"DATABASE_URL": settings.database_url, "PETITIONBOT_CONFIG": settings.config_path,
           "USER": "ops"}
    runner = CliRunner()
    sent = runner.invoke(main, ["announce", "--petition", "sirt", "--text", "Hi", "--send"],
                         env=env)
    assert sent.exit_code == 0, sent.output
    drafted = runner.invoke(main, ["announce", "--petition", "sirt", "--text", "Later"],
                            env=env)
    assert drafted.exit_code == 0, drafted.output
    approved = runner.invoke(main, ["announcement", "approve", "2"], env=env)
    assert approved.exit_code == 0, approved.output
    assert (status_of(sessions, 1), status_of(sessions, 2)) == ("sending", "sending")


# 2. Sign-ins ---------------------------------------------------------------------------------

def cookie_of(b: Browser) -> str:
    found = b.client.get_cookie("session", domain=DOMAIN)
    assert found is not None
    return found.value


def with_cookie(app: Flask, value: str) -> Browser:
    """Another browser (or another machine) holding a copy of a session cookie."""
    copy = browser(app, ip="203.0.113.50")
    copy.client.set_cookie("session", value, domain=DOMAIN, secure=True, httponly=True)
    return copy


@pytest.fixture
def second_process(settings: Settings, tmp_path: Path) -> Iterator[Flask]:
    """Another web process on the same database (its own app, engine and memory)."""
    from webhooks import create_app

    other = console_setup(create_app(settings), tmp_path)
    yield other
    other.extensions["petitionbot"].engine.dispose()


def test_a_cookie_copied_before_logout_is_refused_after_it_on_every_process(
        app: Flask, second_process: Flask, staff_ids: dict[str, int]) -> None:
    b = browser(app, "admin")
    copied = cookie_of(b)
    assert with_cookie(app, copied).get("/staff/").status_code == 200
    assert with_cookie(second_process, copied).get("/staff/").status_code == 200
    assert b.post("/staff/logout").status_code == 302
    for process in (app, second_process):
        stolen = with_cookie(process, copied)
        refused = stolen.get("/staff/")
        assert refused.status_code == 302
        assert refused.headers["Location"].startswith("/staff/login")
        assert stolen.get("/staff/audit").status_code == 302


def test_a_sign_in_ends_twelve_hours_after_it_began_however_busy(
        app: Flask, staff_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    service = app.extensions["petitionbot"].service
    signed_in = dt.datetime.now(dt.UTC)
    monkeypatch.setattr(service, "clock", lambda: signed_in)
    b = browser(app, "editor")
    for hours in (1, 6, 11.9):  # in use all day: still the one sign-in
        monkeypatch.setattr(service, "clock",
                            lambda h=hours: signed_in + dt.timedelta(hours=h))
        assert b.get("/staff/").status_code == 200
    monkeypatch.setattr(service, "clock", lambda: signed_in + dt.timedelta(hours=12.01))
    assert b.get("/staff/").status_code == 302


def test_the_session_cookie_lasts_twelve_hours_not_a_month(
        app: Flask, staff_ids: dict[str, int]) -> None:
    assert app.config["PERMANENT_SESSION_LIFETIME"] == dt.timedelta(hours=12)
    response = browser(app).login(email_of("viewer"))
    expires = re.search(r"Expires=([^;]+)", session_cookie(response))
    assert expires, "a permanent session cookie says when it expires"
    lifetime = parsedate_to_datetime(expires.group(1)) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=11) < lifetime <= dt.timedelta(hours=12)


def test_only_a_hash_of_the_session_token_is_stored(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    b = browser(app, "viewer")
    data = app.session_interface.get_signing_serializer(app).loads(  # type: ignore[attr-defined]
        cookie_of(b))
    number, _, token = data["_user_id"].split(":", 2)
    assert int(number) == staff_ids["viewer"] and len(token) >= 32
    with sessions() as session:
        row = session.scalars(select(StaffSession)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() != token
    assert row.ended_at is None
    assert row.expires_at - row.created_at == dt.timedelta(hours=12)


def test_old_sign_ins_are_deleted_at_the_next_login(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    now = dt.datetime.now(dt.UTC)
    long_ago, lately = now - dt.timedelta(days=3), now - dt.timedelta(hours=2)
    with sessions.begin() as session:
        for n, (created, expires, ended) in enumerate((
                (long_ago, long_ago + dt.timedelta(hours=12), None),       # expired
                (long_ago, long_ago + dt.timedelta(hours=12), long_ago),   # logged out
                (lately, lately + dt.timedelta(hours=12), lately))):       # out an hour ago
            session.add(StaffSession(token_hash=f"{n:064d}", staff_user_id=staff_ids["editor"],
                                     created_at=created, expires_at=expires, ended_at=ended))
    browser(app, "admin")
    with sessions() as session:
        kept = sorted(s.token_hash for s in session.scalars(select(StaffSession)))
    assert len(kept) == 2 and f"{2:064d}" in kept  # the recent one, and the new sign-in


# 3. The login throttle -------------------------------------------------------------------------

def test_a_burst_of_guesses_at_once_is_held_to_the_limit(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    def guess(n: int) -> Callable[[], int]:
        guesser = browser(app, ip="198.51.100.7")
        return lambda: guesser.login(email_of("admin"), f"guess number {n:04d}").status_code

    answers = together([guess(n) for n in range(12)])
    assert sorted(answers) == [401] * 5 + [429] * 7
    with sessions() as session:  # five passwords were checked, no more
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "login.failed")) == 5


def test_overlapping_guesses_at_once_are_each_counted_once(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    """Two accounts from two addresses at once: the windows overlap (each attempt locks
    three rows), yet nothing deadlocks and every window counts exactly."""
    def guess(n: int) -> Callable[[], int]:
        guesser = browser(app, ip=f"198.51.100.{n % 2 + 1}")
        role = ("admin", "editor")[n // 2 % 2]
        return lambda: guesser.login(email_of(role), f"guess number {n:04d}").status_code

    assert together([guess(n) for n in range(16)]) == [401] * 16
    with sessions() as session:
        hits = sorted(len(w.hits) for w in session.scalars(select(RateWindow)))
    assert hits == [4] * 4 + [8] * 4  # four pairs; two addresses and two accounts


def test_a_strangers_failures_do_not_lock_the_real_admin_out(
        app: Flask, staff_ids: dict[str, int]) -> None:
    stranger = browser(app, ip="203.0.113.66")
    for _ in range(5):
        assert stranger.login(email_of("admin"), "let me in please").status_code == 401
    assert stranger.login(email_of("admin"), "let me in please").status_code == 429
    assert browser(app, ip="192.0.2.10").login(email_of("admin")).status_code == 302


def test_guessing_spread_over_many_addresses_meets_the_account_backstop(
        app: Flask, staff_ids: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "ACCOUNT", throttle.Limit("login-account", 6, 3600))
    for n in range(6):
        guesser = browser(app, ip=f"198.51.100.{n + 20}")
        assert guesser.login(email_of("admin"), "guessing again").status_code == 401
    assert browser(app, ip="198.51.100.99").login(email_of("admin")).status_code == 429
    assert browser(app, ip="198.51.100.99").login(email_of("editor")).status_code == 302


def test_a_successful_login_clears_the_failures_and_is_not_counted(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    b = browser(app, ip="192.0.2.44")
    for _ in range(4):
        assert b.login(email_of("editor"), "typo in the password").status_code == 401
    assert b.login(email_of("editor")).status_code == 302
    for _ in range(5):  # a fresh allowance for that person at that address
        assert browser(app, ip="192.0.2.44").login(
            email_of("editor"), "typo again").status_code == 401
    with sessions() as session:
        hits = sorted(len(w.hits) for w in session.scalars(select(RateWindow)))
    assert hits == [5, 9, 9]  # pair: the 5 new failures; address, account: all 9 failures


def test_staff_log_in_while_redis_is_unreachable(
        settings: Settings, tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    from webhooks import create_app

    down = console_setup(create_app(dataclasses.replace(
        settings, redis_url="redis://127.0.0.1:9/0")), tmp_path)  # nothing listens on 9
    try:
        add_people(sessions)
        b = browser(down)
        assert b.login(email_of("admin"), "wrong password, sorry").status_code == 401
        assert b.login(email_of("admin")).status_code == 302
        assert b.get("/staff/").status_code == 200
    finally:
        down.extensions["petitionbot"].engine.dispose()


def test_the_throttle_keeps_no_email_or_address(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    ip = "198.51.100.123"
    browser(app, ip=ip).login(email_of("admin"), "wrong password here")
    with sessions() as session:
        keys = session.scalars(select(RateWindow.key)).all()
    assert len(keys) == 3
    plain = {email_of("admin"), ip}
    hashes = {hashlib.sha256(v.encode()).hexdigest() for v in plain}
    for key in keys:
        assert len(key) <= 80
        assert not any(v in key for v in plain | {h[:32] for h in hashes})


def test_stale_rate_windows_are_deleted_as_logins_go_by(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        session.add(RateWindow(key="login-pair:stale", hits=[1.0],
                               updated_at=now - dt.timedelta(days=2)))
        session.add(RateWindow(key="login-pair:recent", hits=[now.timestamp()],
                               updated_at=now - dt.timedelta(hours=2)))
    browser(app, ip="192.0.2.77").login(email_of("admin"), "not it at all")
    with sessions() as session:
        keys = set(session.scalars(select(RateWindow.key)))
    assert "login-pair:stale" not in keys and "login-pair:recent" in keys


# 4. URLs ---------------------------------------------------------------------------------------

ID_ROUTES = [("GET", "/staff/announcements/{}"), ("GET", "/staff/announcements/{}/edit"),
             ("GET", "/staff/announcements/{}/progress.json"),
             ("POST", "/staff/announcements/{}/approve"),
             ("POST", "/staff/announcements/{}/cancel"),
             ("POST", "/staff/announcements/{}/test"), ("GET", "/staff/supporters/{}"),
             ("POST", "/staff/supporters/{}/export.json"),
             ("GET", "/staff/supporters/{}/erase"), ("POST", "/staff/voices/{}/approve"),
             ("POST", "/staff/voices/{}/reject")]


@pytest.mark.parametrize("method,path", ID_ROUTES, ids=[p for _, p in ID_ROUTES])
def test_an_id_no_database_integer_holds_is_a_404(
        method: str, path: str, app: Flask, staff_ids: dict[str, int]) -> None:
    admin = browser(app, "admin")
    for number in (HUGE, str(2**63), "0", "007", "-1"):
        url = path.format(number)
        response = admin.get(url) if method == "GET" else admin.post(url, {"when": "now"})
        assert response.status_code == 404, (url, response.status_code)


def test_the_largest_id_is_looked_up_and_not_found(
        app: Flask, staff_ids: dict[str, int]) -> None:
    admin = browser(app, "admin")
    assert admin.get(f"/staff/announcements/{2**63 - 1}").status_code == 404
    assert admin.get(f"/staff/supporters/{2**63 - 1}").status_code == 404


@pytest.mark.parametrize("path", ["/staff/audit", "/staff/voices"])
def test_a_page_number_no_database_offset_holds_shows_the_first_page(
        path: str, app: Flask, staff_ids: dict[str, int]) -> None:
    assert browser(app, "admin").get(f"{path}?page={HUGE}").status_code == 200


@pytest.mark.parametrize("target", [
    "/staff/\r\nSet-Cookie: stolen=1", "/staff/\nX-Evil: 1", "/staff/\tx",
    "/staff/\\\\evil.example", "/\\evil.example/staff/", "//evil.example/staff/",
    "/staff//evil.example", "https://evil.example/staff/", "/staffing", "/staff/\u2028",
    "/staff/caf\u00e9", "staff/audit", "/staff/ audit"])
def test_login_goes_to_the_dashboard_after_a_next_that_is_not_a_plain_console_path(
        target: str, app: Flask, staff_ids: dict[str, int]) -> None:
    b = browser(app)
    response = b.post("/staff/login", {"email": email_of("viewer"), "password": PASSWORD},
                      query_string={"next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/staff/"


def test_login_goes_back_to_a_plain_console_path_with_its_query(
        app: Flask, staff_ids: dict[str, int]) -> None:
    b = browser(app)
    response = b.post("/staff/login", {"email": email_of("admin"), "password": PASSWORD},
                      query_string={"next": "/staff/audit?page=2&action=login"})
    assert response.headers["Location"] == "/staff/audit?page=2&action=login"


@pytest.mark.parametrize("path", ["/staff/supporters?q=a%00b", "/staff/audit?actor=a%00b",
                                  "/staff/audit?action=%00", "/staff/?petition=%00",
                                  "/staff/handin?petition=%00", "/staff/voices?status=%00",
                                  "/staff/login?next=/staff/%00", "/staff/login?next=%7F"])
def test_a_nul_in_a_query_is_refused_not_a_database_error(
        path: str, app: Flask, staff_ids: dict[str, int]) -> None:
    refused = browser(app, "admin").get(path)
    assert refused.status_code == 400, refused.status_code
    assert "holds characters that cannot be stored" in refused.get_data(as_text=True)


def test_a_nul_in_a_login_email_is_refused_not_a_database_error(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    assert browser(app).login("admin\x00@planets.example").status_code == 400
    # The password itself is only hashed: whatever it holds, it is just wrong.
    assert browser(app).login(email_of("admin"), "wrong\x00password!").status_code == 401


def test_a_draft_written_in_the_console_is_not_approved_from_telegram(
        app: Flask, sessions: sessionmaker[Session], config: Config) -> None:
    """The console's a@x and Telegram's 123 may be one person: nobody can tell, so a draft
    is approved where it was written and last edited."""
    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", "News", "a@x.example", now=now)
        with pytest.raises(broadcast.ApprovalRefused, match="console"):
            broadcast.approve(session, config, draft, "telegram:123", now)
        told = broadcast.create(session, config, "sirt", "More news", "telegram:123", now=now)
        with pytest.raises(broadcast.ApprovalRefused, match="Telegram"):
            broadcast.approve(session, config, told, "b@x.example", now)
        assert broadcast.approve(session, config, told, "telegram:456", now) >= 0
