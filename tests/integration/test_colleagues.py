"""Colleagues: admins invite staff with a one-time link, change roles and deactivate
accounts; everyone changes their own password and may sign in with a second step, a code
from an authenticator app (required of admins by the shipped config.toml), or a recovery
code. Driven through the console's pages with their CSRF tokens, and the command line.

Sam is the admin, Jo the editor she invites, Val a viewer; time is the service's clock,
set by each test, and codes are computed with pyotp from the secret the page shows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

import pyotp
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from bot.infra.config import load_config
from bot.infra.settings import Settings
from bot.shell import api_tokens, invites, two_factor
from bot.shell import staff as accounts
from models import AuditEntry, StaffSession, StaffUser
from models.staff import ApiToken, StaffInvite
from tests.conftest import CONFIG, PUBLIC_URL, serving, together
from tests.integration.console_helpers import PASSWORD, Browser, add_people, email_of

SAM, VAL = email_of("admin"), email_of("viewer")
JO = "jo@planets.example"
JO_PASSWORD = "a kettle, two mugs and a map"
START = dt.datetime(2026, 3, 2, 10, 0, 5, tzinfo=dt.UTC)  # 5 s into a 30-second step
LINK = re.compile(r'id="invite-link" class="secret" value="([^"]+)"')
SECRET = re.compile(r'id="totp-secret">([A-Z2-7 ]+)<')
CODES = re.compile(r"<li><code>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</code></li>")
TOKEN_LINE = re.compile(r"/staff/invite/([A-Za-z0-9_-]+)$")
PLACES = itertools.count(100)  # the last part of a new client address


@dataclasses.dataclass
class Clock:
    """The service's clock, moved by the test."""

    now: dt.datetime = START

    def __call__(self) -> dt.datetime:
        return self.now

    def later(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(app.extensions["petitionbot"].service, "clock", clock)
    return clock


@pytest.fixture
def staff_ids(sessions: sessionmaker[Session], app: Flask) -> dict[str, int]:
    return add_people(sessions)


def browser(app: Flask, email: str | None = None, password: str = PASSWORD,
            ip: str = "192.0.2.10") -> Browser:
    """A fresh browser; signed in (password only) as `email`, if given."""
    b = Browser(app.test_client(), ip=ip)
    if email:
        assert b.login(email, password).status_code == 302
    return b


def page(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def audit_log(
        sessions: sessionmaker[Session]) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    with sessions() as session:
        return [(e.actor, e.action, e.target, e.detail or {}) for e in session.scalars(
            select(AuditEntry).order_by(AuditEntry.id))]


def actions(sessions: sessionmaker[Session]) -> list[str]:
    return [action for _, action, _, _ in audit_log(sessions)
            if action not in ("login", "login.failed")]


def user(sessions: sessionmaker[Session], email: str) -> StaffUser:
    with sessions() as session:
        found = session.scalar(select(StaffUser).where(StaffUser.email == email))
        assert found is not None
        return found


def invite_link(sam: Browser, email: str, role: str) -> str:
    made = sam.post("/staff/colleagues", {"email": email, "role": role})
    assert made.status_code == 200, page(made)
    found = LINK.search(page(made))
    assert found, "the new link is on the page"
    return found.group(1)


def accept(link: str, app: Flask, name: str = "Jo Bloggs", password: str = JO_PASSWORD,
           again: str | None = None) -> tuple[Browser, TestResponse]:
    assert link.startswith(PUBLIC_URL + "/staff/invite/")
    b = browser(app, ip="198.51.100.7")
    path = link.removeprefix(PUBLIC_URL)
    return b, b.post(path, {"name": name, "password": password,
                            "again": password if again is None else again})


def set_up_two_factor(b: Browser, clock: Clock) -> tuple[pyotp.TOTP, list[str]]:
    """Set up two-factor sign-in as the page asks: the app's key, then its first code."""
    setup = b.get("/staff/account/two-factor")
    assert setup.status_code == 200, page(setup)
    assert '<svg role="img"' in page(setup), "the QR code is drawn in the page"
    found = SECRET.search(page(setup))
    assert found, "the key is also shown as text"
    totp = pyotp.TOTP(found.group(1).replace(" ", ""))
    done = b.post("/staff/account/two-factor", {"code": totp.at(clock.now)})
    assert done.status_code == 200, page(done)
    codes = CODES.findall(page(done))
    assert len(codes) == two_factor.RECOVERY_CODES == len(set(codes))
    return totp, codes


def wrong_code(totp: pyotp.TOTP, at: dt.datetime) -> str:
    """Six digits that are not the code of any step the window accepts at `at`."""
    right = {totp.at(at + dt.timedelta(seconds=30 * step)) for step in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333")
                if code not in right)


def sign_in_with_code(app: Flask, email: str, code: str,
                      password: str = PASSWORD) -> tuple[Browser, TestResponse]:
    """A sign-in from a new place each time, so the login throttle's pair stays clear."""
    b = browser(app, ip=f"192.0.2.{next(PLACES)}")
    first = b.login(email, password)
    assert first.status_code == 302
    assert first.headers["Location"].endswith("/staff/login/code")
    return b, b.post("/staff/login/code", {"code": code})


# Invitations -------------------------------------------------------------------------------

def test_sam_invites_jo_who_joins_once_with_the_link_and_the_log_says_so(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        clock: Clock) -> None:
    sam = browser(app, SAM)
    link = invite_link(sam, JO, "editor")
    token = TOKEN_LINE.search(link)
    assert token
    with sessions() as session:
        row = session.scalars(select(StaffInvite)).one()
        assert (row.email, row.role, row.expires_at) == (JO, "editor", START + invites.LIFETIME)
        assert row.token_hash == accounts.token_hash(token.group(1)) != token.group(1)
    listed = page(sam.get("/staff/colleagues"))
    assert JO in listed and link not in listed, "the link is shown once, when made"

    opened = browser(app).get(link.removeprefix(PUBLIC_URL))
    assert opened.status_code == 200 and JO in page(opened) and "editor" in page(opened)
    jo, joined = accept(link, app)
    assert joined.status_code == 303 and joined.headers["Location"] == "/staff/account"
    account = page(jo.get("/staff/account"))
    assert "Jo Bloggs" in account and JO in account and "editor" in account
    assert jo.get("/staff/announcements/new").status_code == 200  # an editor's page

    again = browser(app).get(link.removeprefix(PUBLIC_URL))
    assert again.status_code == 410 and "used already" in page(again)
    assert browser(app).login(JO, JO_PASSWORD).status_code == 302
    joined_user = user(sessions, JO)
    assert (joined_user.name, joined_user.role, joined_user.active) == (
        "Jo Bloggs", "editor", True)
    assert [(a, act, t) for a, act, t, _ in audit_log(sessions)
            if act.startswith("invite.")] == [
        (SAM, "invite.create", f"staff:{JO}"), (JO, "invite.accept", f"staff:{JO}")]


def test_an_invitation_is_refused_for_an_account_and_a_link_ends_when_withdrawn_replaced_or_old(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        clock: Clock) -> None:
    sam = browser(app, SAM)
    refused = sam.post("/staff/colleagues", {"email": VAL.upper(), "role": "editor"})
    assert refused.status_code == 400 and "already has an account" in page(refused)
    with sessions.begin() as session:
        accounts.deactivate(session, accounts.find(session, email_of("editor")), None, START)
    closed = sam.post("/staff/colleagues", {"email": email_of("editor"), "role": "editor"})
    assert closed.status_code == 400 and "reactivate it instead" in page(closed)

    withdrawn = invite_link(sam, "kim@planets.example", "viewer")
    with sessions() as session:
        kim = session.scalar(select(StaffInvite.id))
    assert sam.post(f"/staff/colleagues/invites/{kim}/revoke").status_code == 303
    replaced = invite_link(sam, JO, "viewer")
    latest = invite_link(sam, JO, "editor")
    old = invite_link(sam, "lee@planets.example", "viewer")
    clock.later(days=7, seconds=1)
    for link, words in ((withdrawn, "withdrawn"), (replaced, "withdrawn"),
                        (old, "expired"), (latest, "expired")):
        response = browser(app).get(link.removeprefix(PUBLIC_URL))
        assert response.status_code == 410 and words in page(response), link
        assert accept(link, app)[1].status_code == 410
    assert browser(app).get("/staff/invite/not-a-token").status_code == 404
    with sessions() as session:
        assert session.scalar(select(StaffUser).where(StaffUser.email == JO)) is None


@pytest.mark.parametrize(("password", "again", "says"), [
    ("too short", "too short", "at least 12 characters"),
    (JO.upper(), JO.upper(), "not your email address"),
    (JO_PASSWORD, JO_PASSWORD + "!", "The two passwords differ"),
])
def test_a_password_chosen_at_the_invitation_is_long_and_not_the_email(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        clock: Clock, password: str, again: str, says: str) -> None:
    link = invite_link(browser(app, SAM), JO, "viewer")
    _, refused = accept(link, app, password=password, again=again)
    assert refused.status_code == 400 and says in page(refused)
    assert accept(link, app)[1].status_code == 303, "the link still works after a mistake"


# Roles and deactivation --------------------------------------------------------------------

def test_roles_change_but_never_ones_own_nor_so_that_no_admin_is_left(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        clock: Clock) -> None:
    sam = browser(app, SAM)
    editor = staff_ids["editor"]
    assert sam.post(f"/staff/colleagues/{editor}/role", {"role": "viewer"}).status_code == 303
    assert user(sessions, email_of("editor")).role == "viewer"
    own = sam.post(f"/staff/colleagues/{staff_ids['admin']}/role", {"role": "editor"},
                   follow_redirects=True)
    assert "cannot change your own role" in page(own)
    assert sam.post(f"/staff/colleagues/{editor}/role", {"role": "owner"}).status_code == 303
    assert user(sessions, email_of("editor")).role == "viewer"
    assert ("staff.role", {"from": "editor", "to": "viewer"}) in [
        (act, detail) for _, act, _, detail in audit_log(sessions)]

    # The operator (command line) is not an admin: the last active one stays one.
    with sessions.begin() as session:
        second = accounts.find(session, "admin2@planets.example")
        accounts.deactivate(session, second, None, START)
    with sessions.begin() as session, pytest.raises(accounts.StaffError, match="last active"):
        accounts.change_role(session, accounts.find(session, SAM), "editor", None, START)
    with sessions.begin() as session, pytest.raises(accounts.StaffError, match="last active"):
        accounts.deactivate(session, accounts.find(session, SAM), None, START)
    assert user(sessions, SAM).role == "admin" and user(sessions, SAM).active


def test_deactivating_jo_signs_her_out_at_once_and_revokes_her_api_tokens(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        clock: Clock) -> None:
    editor = email_of("editor")
    jo = browser(app, editor)
    with sessions.begin() as session:
        token = api_tokens.issue(session, accounts.find(session, editor), "CRM", START).secret
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {token}", "Host": "petition.example.org"}
    assert api.get("/api/v1/petitions/sirt", headers=bearer).status_code == 200

    sam = browser(app, SAM)
    done = sam.post(f"/staff/colleagues/{staff_ids['editor']}/deactivate",
                    follow_redirects=True)
    assert "is deactivated" in page(done)
    assert jo.get("/staff/").status_code == 302
    assert api.get("/api/v1/petitions/sirt", headers=bearer).status_code == 401
    assert browser(app).login(editor).status_code == 401
    with sessions() as session:
        assert session.scalar(select(ApiToken.revoked_at)) == START
        assert all(s.ended_at == START for s in session.scalars(
            select(StaffSession).where(StaffSession.staff_user_id == staff_ids["editor"])))
    closed = [d for _, act, _, d in audit_log(sessions) if act == "staff.deactivate"]
    assert closed == [{"sign_ins_ended": 1, "tokens_revoked": 1}]

    mine = sam.post(f"/staff/colleagues/{staff_ids['admin']}/deactivate",
                    follow_redirects=True)
    assert "cannot deactivate your own account" in page(mine)
    assert sam.post(f"/staff/colleagues/{staff_ids['editor']}/reactivate").status_code == 303
    assert browser(app).login(editor).status_code == 302
    assert api.get("/api/v1/petitions/sirt", headers=bearer).status_code == 401, \
        "a revoked token stays revoked"


def test_colleagues_is_for_admins_only(app: Flask, staff_ids: dict[str, int]) -> None:
    assert browser(app, email_of("editor")).get("/staff/colleagues").status_code == 403
    listed = page(browser(app, SAM).get("/staff/colleagues"))
    for email in (SAM, VAL, email_of("editor")):
        assert email in listed


# Your own password -------------------------------------------------------------------------

def test_val_changes_her_password_with_the_current_one_and_her_other_sign_ins_end(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        clock: Clock) -> None:
    here, elsewhere = browser(app, VAL), browser(app, VAL, ip="203.0.113.9")
    new = "seven green bottles on the wall"
    wrong = here.post("/staff/account/password",
                      {"password": "not my password", "new_password": new, "again": new})
    assert wrong.status_code == 400 and "current password is not right" in page(wrong)
    short = here.post("/staff/account/password",
                      {"password": PASSWORD, "new_password": "short", "again": "short"})
    assert short.status_code == 400 and "at least 12" in page(short)
    assert elsewhere.get("/staff/").status_code == 200, "nothing changed yet"

    done = here.post("/staff/account/password",
                     {"password": PASSWORD, "new_password": new, "again": new})
    assert done.status_code == 303
    assert here.get("/staff/").status_code == 200, "this sign-in goes on"
    assert elsewhere.get("/staff/").status_code == 302, "the other one has ended"
    assert browser(app).login(VAL, PASSWORD).status_code == 401
    assert browser(app).login(VAL, new).status_code == 302
    assert user(sessions, VAL).password_changed_at == START
    assert [(act, d) for _, act, _, d in audit_log(sessions) if act == "password.change"] == [
        ("password.change", {"other_sign_ins_ended": 1})]


def test_val_names_herself(app: Flask, staff_ids: dict[str, int],
                           sessions: sessionmaker[Session], clock: Clock) -> None:
    val = browser(app, VAL)
    assert val.post("/staff/account/name", {"name": "  Val   Okafor "}).status_code == 303
    assert user(sessions, VAL).name == "Val Okafor"
    assert "Val Okafor" in page(browser(app, SAM).get("/staff/colleagues"))


# Two-factor sign-in ------------------------------------------------------------------------

def test_val_turns_on_two_factor_and_then_signs_in_with_a_code_used_once(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        clock: Clock) -> None:
    val = browser(app, VAL)
    early = val.post("/staff/account/two-factor", {"code": "000000"}, follow_redirects=True)
    assert "Scan this QR code with your app first" in page(early)
    shown = SECRET.search(page(early))
    assert shown and SECRET.findall(page(val.get("/staff/account/two-factor"))) == [
        shown.group(1)], "a reload shows the same key"
    guessed = wrong_code(pyotp.TOTP(shown.group(1).replace(" ", "")), clock.now)
    refused = val.post("/staff/account/two-factor", {"code": guessed})
    assert refused.status_code == 400 and "not right" in page(refused)
    totp, codes = set_up_two_factor(val, clock)
    stored = user(sessions, VAL)
    assert stored.totp_confirmed_at == START and stored.recovery_codes is not None
    assert not set(codes) & set(stored.recovery_codes), "only hashes of the codes are kept"
    assert "10 recovery codes left" in page(val.get("/staff/account"))

    clock.later(seconds=30)
    b = browser(app, ip="192.0.2.30")
    pending = b.login(VAL)
    assert pending.headers["Location"] == "/staff/login/code"
    assert b.get("/staff/").status_code == 302, "not signed in before the code"
    wrong = b.post("/staff/login/code", {"code": wrong_code(totp, clock.now)})
    assert wrong.status_code == 401 and "not right" in page(wrong)
    code = totp.at(clock.now)
    assert b.post("/staff/login/code", {"code": code}).status_code == 302
    assert b.get("/staff/").status_code == 200

    replayed = sign_in_with_code(app, VAL, code)[1]
    assert replayed.status_code == 401, "a code is accepted once"
    earlier = sign_in_with_code(app, VAL, totp.at(clock.now - dt.timedelta(seconds=30)))[1]
    assert earlier.status_code == 401, "nor one older than the last used"
    assert sign_in_with_code(app, VAL, codes[0].upper().replace("-", " "))[1].status_code == 302
    assert sign_in_with_code(app, VAL, codes[0])[1].status_code == 401, "a recovery code once"
    assert "9 recovery codes left" in page(b.get("/staff/account"))

    log = audit_log(sessions)
    assert [act for _, act, _, _ in log if act.startswith(("two_factor", "recovery"))] == [
        "two_factor.on", "recovery_code.use"]
    assert [d for _, act, _, d in log if act == "recovery_code.use"] == [{"left": 9}]
    assert [act for _, act, _, _ in log].count("login.code_failed") == 4
    said = repr(log)
    for secret in (totp.secret, code, *codes, PASSWORD):
        assert secret not in said


def test_one_code_sent_twice_at_once_signs_in_once(
        app: Flask, staff_ids: dict[str, int], clock: Clock) -> None:
    totp, _ = set_up_two_factor(browser(app, VAL), clock)
    clock.later(seconds=30)
    code = totp.at(clock.now)
    sent: list[Callable[[], TestResponse]] = []
    for ip in ("192.0.2.41", "192.0.2.42"):
        b = browser(app, ip=ip)
        assert b.login(VAL).status_code == 302
        sent.append(functools.partial(b.post, "/staff/login/code", {"code": code}))
    assert sorted(r.status_code for r in together(sent)) == [302, 401]


def test_the_code_counts_against_the_login_throttle_and_follows_the_password_soon(
        app: Flask, staff_ids: dict[str, int], clock: Clock) -> None:
    totp, _ = set_up_two_factor(browser(app, VAL), clock)
    clock.later(seconds=30)
    b = browser(app, ip="192.0.2.50")
    assert b.login(VAL).status_code == 302  # the pair's first attempt of five
    guessed = wrong_code(totp, clock.now)
    for _ in range(4):
        assert b.post("/staff/login/code", {"code": guessed}).status_code == 401
    assert b.post("/staff/login/code", {"code": guessed}).status_code == 429
    assert b.post("/staff/login/code", {"code": totp.at(clock.now)}).status_code == 429

    late = browser(app, ip="192.0.2.51")
    assert late.login(VAL).status_code == 302
    clock.later(minutes=5, seconds=1)
    expired = late.post("/staff/login/code", {"code": totp.at(clock.now)})
    assert expired.status_code == 302 and expired.headers["Location"] == "/staff/login"
    assert late.get("/staff/").status_code == 302


def test_val_turns_two_factor_off_with_her_password_and_a_code_and_renews_recovery_codes(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session],
        clock: Clock) -> None:
    val = browser(app, VAL)
    totp, old_codes = set_up_two_factor(val, clock)
    refused = val.post("/staff/account/two-factor/recovery-codes", {"password": "wrong one"})
    assert refused.status_code == 400 and "password is not right" in page(refused)
    renewed = val.post("/staff/account/two-factor/recovery-codes", {"password": PASSWORD})
    new_codes = CODES.findall(page(renewed))
    assert renewed.status_code == 200 and len(new_codes) == 10
    assert sign_in_with_code(app, VAL, old_codes[0])[1].status_code == 401
    assert sign_in_with_code(app, VAL, new_codes[0])[1].status_code == 302

    clock.later(seconds=30)
    no_code = val.post("/staff/account/two-factor/off", {"password": PASSWORD, "code": "1"})
    assert no_code.status_code == 400 and "code is not right" in page(no_code)
    off = val.post("/staff/account/two-factor/off",
                   {"password": PASSWORD, "code": totp.at(clock.now)})
    assert off.status_code == 303
    assert not two_factor.is_on(user(sessions, VAL))
    assert browser(app).login(VAL).headers["Location"] == "/staff/"
    assert [a for a in actions(sessions) if "two_factor" in a or "recovery" in a] == [
        "two_factor.on", "recovery_codes.regenerate", "recovery_code.use", "two_factor.off"]


# Required of admins (the shipped config.toml) ----------------------------------------------

def test_the_shipped_config_requires_two_factor_sign_in_of_admins() -> None:
    assert load_config(CONFIG).console.admin_two_factor is True


@pytest.fixture
def strict(settings: Settings, sessions: sessionmaker[Session],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Flask, Clock]]:
    """The app on the shipped config.toml, where admins must use two-factor sign-in."""
    for app in serving(dataclasses.replace(settings, config_path=str(CONFIG))):
        assert app.extensions["petitionbot"].config.console.admin_two_factor
        clock = Clock()
        monkeypatch.setattr(app.extensions["petitionbot"].service, "clock", clock)
        add_people(sessions)
        yield app, clock


def test_sam_is_taken_to_set_up_two_factor_before_anything_else(
        strict: tuple[Flask, Clock], sessions: sessionmaker[Session]) -> None:
    app, clock = strict
    sam = browser(app, SAM)
    for path in ("/staff/", "/staff/audit", "/staff/colleagues", "/staff/account"):
        response = sam.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/staff/account/two-factor"
    assert "Set it up now to go on" in page(sam.get("/staff/account/two-factor"))
    assert browser(app, VAL).get("/staff/").status_code == 200, "only admins must"

    totp, codes = set_up_two_factor(sam, clock)
    assert sam.get("/staff/audit").status_code == 200
    kept = sam.post("/staff/account/two-factor/off",
                    {"password": PASSWORD, "code": codes[0]})
    assert kept.status_code == 400 and "required for admins" in page(kept)
    assert two_factor.is_on(user(sessions, SAM))
    clock.later(seconds=30)
    assert sign_in_with_code(app, SAM, totp.at(clock.now))[1].status_code == 302


# The command line --------------------------------------------------------------------------

def test_the_operator_lists_staff_and_resets_two_factor_for_a_locked_out_admin(
        strict: tuple[Flask, Clock], settings: Settings, sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.entry.cli import main

    app, clock = strict
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    added = CliRunner().invoke(main, ["staff", "add", "ops@planets.example", "--role",
                                      "viewer"], input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    sam = browser(app, SAM)
    set_up_two_factor(sam, clock)

    listed = CliRunner().invoke(main, ["staff", "list"])
    assert listed.exit_code == 0, listed.output
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.output.splitlines()}
    assert rows[SAM][1:4] == ["admin", "active", "two-factor on"]
    assert rows["ops@planets.example"][1:4] == ["viewer", "active", "two-factor off"]

    reset = CliRunner().invoke(main, ["staff", "reset-two-factor", SAM.upper()])
    assert reset.exit_code == 0, reset.output
    assert sam.get("/staff/").status_code == 302, "her sign-ins have ended"
    assert not two_factor.is_on(user(sessions, SAM))
    again = browser(app, SAM)
    assert again.get("/staff/").headers["Location"] == "/staff/account/two-factor"
    unknown = CliRunner().invoke(main, ["staff", "reset-two-factor", "nobody@planets.example"])
    assert unknown.exit_code != 0 and "no staff account" in unknown.output

    by_operator = [(act, target) for who, act, target, _ in audit_log(sessions)
                   if who == accounts.OPERATOR]
    assert by_operator == [("staff.add", "staff:ops@planets.example"),
                           ("two_factor.reset", f"staff:{SAM}")]


def test_staff_added_on_the_command_line_follow_the_same_password_rules(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.entry.cli import main

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    email = "ops@planets.example"
    refused = CliRunner().invoke(main, ["staff", "add", email, "--role", "admin"],
                                 input=email.upper() + "\n")
    assert refused.exit_code != 0 and "not your email address" in refused.output
