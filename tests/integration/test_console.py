"""The staff console at /staff: logins, roles on every route, CSRF, announcements with
their preview and approval, voices, supporters' data (export and erasure), hand-in,
the dashboard, the audit log, and a simulator whose activity is never counted."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import String, Text, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash

from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell import api_tokens, broadcast, event_receivers, invites
from models import (
    Announcement,
    AuditEntry,
    Base,
    Delivery,
    Identity,
    InboundMessage,
    InboxMessage,
    Petition,
    SavedReply,
    Signature,
    StaffUser,
    Subscription,
    Supporter,
    Voice,
)
from tests.conftest import CONFIG
from tests.integration.console_helpers import (
    CONSOLE,
    PASSWORD,
    Browser,
    add_people,
    email_of,
    session_cookie,
    signer,
)
from tests.integration.inbox_helpers import waiting
from tests.integration.twilio_helpers import Texter

AMIRA, BEN, CARYS = "+447700900123", "+447700900456", "+447700900789"
TEST_GROUP = ["sms:+447700900999", "telegram:4242"]


def write_config(folder: Path, second_approval: bool = True) -> Path:
    """The shipped config, with a staff test group (and the approval rule as given)."""
    text = CONFIG.read_text()
    text = text.replace('issue_file = "petitions/sirt.md"',
                        f'issue_file = "{CONFIG.parent / "petitions" / "sirt.md"}"')
    text = text.replace("test_group = []", f"test_group = {json.dumps(TEST_GROUP)}")
    text = text.replace("require_second_approval = true",
                        f"require_second_approval = {str(second_approval).lower()}")
    text = text.replace("admin_two_factor = true", "admin_two_factor = false")  # as conftest
    path = folder / f"config-{second_approval}.toml"
    path.write_text(text)
    return path


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(settings, config_path=str(write_config(tmp_path)))


def console_setup(app: Flask, tmp_path: Path, csrf: bool = False) -> Flask:
    app.config.update(WTF_CSRF_ENABLED=csrf, STAFF_CACHE_SECONDS=0,
                      STAFF_SIMULATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'simulator.db'}")
    return app


@pytest.fixture
def app(app: Flask, tmp_path: Path) -> Flask:
    return console_setup(app, tmp_path)


@pytest.fixture
def staff_ids(sessions: sessionmaker[Session], app: Flask) -> dict[str, int]:
    return add_people(sessions)


def browser(app: Flask, role: str | None = None, csrf: bool = False,
            ip: str = "192.0.2.10") -> Browser:
    """A fresh browser; logged in as the first account with `role`, if given."""
    b = Browser(app.test_client(), ip=ip, csrf=csrf)
    if role:
        response = b.login(email_of(role))
        assert response.status_code == 302, response.get_data(as_text=True)
    return b


@pytest.fixture
def twilio(app: Flask) -> FlaskClient:
    return app.test_client()


def api_counts(client: FlaskClient) -> dict[str, Any]:
    counts: dict[str, Any] = client.get("/api/petitions/sirt").get_json()["counts"]
    return counts


def draft_by(sessions: sessionmaker[Session], config: Config, email: str,
             text: str = "The petition goes to NHS England next week.",
             **audience: Any) -> int:
    with sessions.begin() as session:
        draft = broadcast.create(session, config, "sirt", text, email,
                                 broadcast.Audience(**audience))
        return draft.id


def status_of(sessions: sessionmaker[Session], announcement_id: int) -> str:
    with sessions() as session:
        found = session.get(Announcement, announcement_id)
        assert found is not None
        return found.status


def audit_actions(sessions: sessionmaker[Session]) -> list[tuple[str, str, str | None]]:
    with sessions() as session:
        return [(e.actor, e.action, e.target) for e in session.scalars(
            select(AuditEntry).order_by(AuditEntry.id))]


# Accounts, sessions, CSRF --------------------------------------------------------------

def test_a_login_sets_a_secure_httponly_lax_cookie_and_logout_ends_it(
        app: Flask, staff_ids: dict[str, int]) -> None:
    b = browser(app)
    assert b.get("/staff/").headers["Location"].startswith("/staff/login?next=/staff/")
    response = b.login("Admin@Planets.example")  # emails are not case-sensitive
    assert response.status_code == 302 and response.headers["Location"] == "/staff/"
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert b.get("/staff/").status_code == 200
    assert b.get("/staff/logout").status_code == 405  # a link cannot log anyone out
    out = b.post("/staff/logout")
    assert out.status_code == 302 and out.headers["Location"] == "/staff/login"
    assert b.get("/staff/").status_code == 302


def test_the_login_page_says_how_to_create_the_first_admin(app: Flask,
                                                           sessions: sessionmaker[Session]) -> None:
    page = browser(app).get("/staff/login").get_data(as_text=True)
    assert "petitionbot staff add you@example.org --role admin" in page
    add_people(sessions)
    assert "staff add" not in browser(app).get("/staff/login").get_data(as_text=True)


def test_a_wrong_password_is_refused_and_audited_without_saying_which_part(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    b = browser(app)
    wrong = b.login(email_of("admin"), "not the password at all")
    unknown = b.login("nobody@planets.example")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "do not match an account" in response.get_data(as_text=True)
    assert b.get("/staff/").status_code == 302
    assert [a for _, a, _ in audit_actions(sessions)] == ["login.failed", "login.failed"]


def test_login_after_next_only_goes_inside_the_console(
        app: Flask, staff_ids: dict[str, int]) -> None:
    b = browser(app)
    email = email_of("viewer")
    inside = b.post("/staff/login?next=/staff/handin", {"email": email, "password": PASSWORD})
    assert inside.headers["Location"] == "/staff/handin"
    b = browser(app)
    away = b.post("/staff/login?next=https://evil.example/", {"email": email,
                                                              "password": PASSWORD})
    assert away.headers["Location"] == "/staff/"


def test_failed_logins_are_limited_per_account_and_address_and_per_address(
        app: Flask, staff_ids: dict[str, int]) -> None:
    b = browser(app, ip="198.51.100.1")
    for _ in range(5):
        assert b.login(email_of("admin"), "wrong password, again").status_code == 401
    limited = b.login(email_of("admin"))  # even the right password waits now
    assert limited.status_code == 429
    assert "Too many failed attempts" in limited.get_data(as_text=True)
    # Only that address is held back for that account: the guesser cannot lock the real
    # admin out from elsewhere, nor the other staff at that address.
    assert browser(app, ip="198.51.100.2").login(email_of("admin")).status_code == 302
    assert b.login(email_of("editor")).status_code == 302
    # One address trying many accounts is limited too.
    prober = browser(app, ip="203.0.113.9")
    for i in range(20):
        assert prober.login(f"guess{i}@planets.example", "x" * 12).status_code == 401
    assert prober.login(email_of("viewer")).status_code == 429
    assert browser(app, ip="203.0.113.10").login(email_of("viewer")).status_code == 302


def test_a_new_password_ends_the_sessions_opened_with_the_old_one(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    b = browser(app, "editor")
    assert b.get("/staff/").status_code == 200
    with sessions.begin() as session:
        session.execute(update(StaffUser).where(StaffUser.id == staff_ids["editor"])
                        .values(password_hash="scrypt:changed"))
    assert b.get("/staff/").status_code == 302


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
        app: Flask, tmp_path: Path, staff_ids: dict[str, int],
        sessions: sessionmaker[Session]) -> None:
    console_setup(app, tmp_path, csrf=True)
    b = browser(app, "editor", csrf=True)
    forged = b.post("/staff/announcements/new", {"text": "Forged"}, token=False)
    assert forged.status_code == 400
    assert "form has expired" in forged.get_data(as_text=True)
    no_header = b.post("/staff/announcements/preview.json", {"text": "x"}, token=False)
    assert no_header.status_code == 400 and "CSRF" in no_header.get_json()["error"]
    assert b.post("/staff/logout", token=False).status_code == 400
    assert b.get("/staff/").status_code == 200  # still logged in
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Announcement)) == 0
    made = b.post("/staff/announcements/new", {"text": "With the token"})
    assert made.status_code == 302
    preview = b.client.post("/staff/announcements/preview.json", data={"text": "x"},
                            base_url=CONSOLE, headers={"X-CSRFToken": b.token(),
                                                       "Referer": CONSOLE + "/staff/"})
    assert preview.status_code == 200
    # A login form needs its token too (login CSRF).
    assert browser(app, csrf=True).post(
        "/staff/login", {"email": email_of("admin"), "password": PASSWORD},
        token=False).status_code == 400
    # The providers' webhooks are not forms: they stay outside CSRF and keep working.
    assert api_counts(app.test_client())["here"] == 0
    signer(app.test_client(), AMIRA, "Amira Khan", "EH1 1AA")
    assert api_counts(app.test_client())["here"] == 1


def test_staff_add_hashes_the_password_with_scrypt(
        settings: Settings, sessions: sessionmaker[Session]) -> None:
    from bot.entry.cli import main

    env = {"DATABASE_URL": settings.database_url, "PETITIONBOT_CONFIG": settings.config_path}
    runner = CliRunner()
    added = runner.invoke(main, ["staff", "add", "Lead@Planets.example", "--role", "admin"],
                          input=PASSWORD + "\n", env=env)
    assert added.exit_code == 0, added.output
    assert "lead@planets.example" in added.output
    with sessions() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.email == "lead@planets.example"))
        assert user is not None and user.role == "admin"
        assert user.password_hash.startswith("scrypt:") and PASSWORD not in user.password_hash
        assert check_password_hash(user.password_hash, PASSWORD)
    again = runner.invoke(main, ["staff", "add", "lead@planets.example", "--role", "viewer"],
                          input=PASSWORD + "\n", env=env)
    assert again.exit_code != 0 and "already has an account" in again.output
    short = runner.invoke(main, ["staff", "add", "x@planets.example", "--role", "viewer"],
                          input="short\n", env=env)
    assert short.exit_code != 0 and "at least 12" in short.output
    bad_role = runner.invoke(main, ["staff", "add", "y@planets.example", "--role", "owner"],
                             input=PASSWORD + "\n", env=env)
    assert bad_role.exit_code != 0


def test_run_on_a_fresh_database_says_how_to_create_the_first_admin(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.entry import cli

    monkeypatch.setattr(cli, "_serve", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "_background", lambda settings: [])  # no worker, no polling
    env = {"DATABASE_URL": settings.database_url, "PETITIONBOT_CONFIG": settings.config_path}
    first = CliRunner().invoke(cli.main, ["run"], env=env)
    assert first.exit_code == 0, first.output
    assert "Staff console: http://127.0.0.1:5000/staff/" in first.output
    assert "petitionbot staff add you@example.org --role admin" in first.output
    CliRunner().invoke(cli.main, ["staff", "add", "a@planets.example", "--role", "admin"],
                       input=PASSWORD + "\n", env=env)
    later = CliRunner().invoke(cli.main, ["run"], env=env)
    assert "staff add" not in later.output


# Roles on every route -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str          # {draft}, {voice}, {supporter}... are filled in from the world
    role: str          # the least role that may use it
    ok: int            # the status it answers that role with
    data: tuple[tuple[str, str], ...] = ()


ROUTES = [
    Route("GET", "/staff/", "viewer", 200),
    Route("GET", "/staff/texts", "admin", 200),
    Route("GET", "/staff/texts/greeting", "admin", 200),
    Route("POST", "/staff/texts/greeting", "admin", 303,
          (("text", "Hi from {organiser}"), ("action", "save"))),
    Route("POST", "/staff/texts/greeting/reset", "admin", 303),
    Route("GET", "/staff/announcements", "viewer", 200),
    Route("GET", "/staff/announcements/new", "editor", 200),
    Route("POST", "/staff/announcements/new", "editor", 302, (("text", "Hello"),)),
    Route("POST", "/staff/announcements/preview.json", "editor", 200, (("text", "Hello"),)),
    Route("GET", "/staff/announcements/{draft}", "viewer", 200),
    Route("GET", "/staff/announcements/{draft}/edit", "editor", 200),
    Route("GET", "/staff/announcements/{draft}/progress.json", "viewer", 200),
    Route("POST", "/staff/announcements/{draft}/test", "editor", 302),
    Route("POST", "/staff/announcements/{draft}/approve", "admin", 303,
          (("when", "now"), ("confirm", "yes"))),  # "yes": at night it would ask first
    Route("POST", "/staff/announcements/{draft}/pause", "admin", 303),
    Route("POST", "/staff/announcements/{draft}/resume", "admin", 303),
    Route("POST", "/staff/announcements/{draft}/cancel", "admin", 303),
    Route("POST", "/staff/announcements/{draft}/discard", "editor", 303),
    Route("GET", "/staff/voices", "editor", 200),
    Route("POST", "/staff/voices/{voice}/approve", "admin", 303),
    Route("POST", "/staff/voices/{voice}/reject", "admin", 303),
    Route("GET", "/staff/supporters?q=Amira", "admin", 200),
    Route("GET", "/staff/supporters/{supporter}", "admin", 200),
    Route("POST", "/staff/supporters/{supporter}/export.json", "admin", 200),
    Route("GET", "/staff/supporters/{supporter}/erase", "admin", 200),
    Route("POST", "/staff/supporters/{supporter}/erase", "admin", 303,
          (("confirm", "ERASE"),)),
    Route("GET", "/staff/handin", "viewer", 200),
    Route("GET", "/staff/handin/summary.csv", "viewer", 200),
    Route("GET", "/staff/handin/signatures.csv", "admin", 200),
    Route("GET", "/staff/simulator", "viewer", 200),
    Route("POST", "/staff/simulator/sms/send", "viewer", 200, (("text", "Hi"),)),
    Route("POST", "/staff/simulator/reset", "viewer", 303),
    Route("GET", "/staff/audit", "admin", 200),
    Route("GET", "/staff/imports", "admin", 200),
    Route("POST", "/staff/imports", "admin", 400, (("step", "check"),)),  # no file chosen
    Route("GET", "/staff/inbox", "viewer", 200),
    Route("GET", "/staff/inbox/{conversation}", "viewer", 200),
    Route("POST", "/staff/inbox/{conversation}/preview.json", "editor", 200,
          (("text", "Hello"),)),
    Route("POST", "/staff/inbox/{conversation}/reply", "editor", 303, (("text", "Hello"),)),
    Route("POST", "/staff/inbox/{conversation}/assign", "editor", 303),
    Route("POST", "/staff/inbox/{conversation}/note", "editor", 303, (("note", "Rang"),)),
    Route("POST", "/staff/inbox/{conversation}/messages/{message}/follow-up", "editor", 303,
          (("action", "Rang them"),)),
    Route("POST", "/staff/inbox/{conversation}/close", "editor", 303),
    Route("GET", "/staff/inbox/replies", "editor", 200),
    Route("POST", "/staff/inbox/replies", "editor", 303, (("title", "Hi"), ("text", "Hi"))),
    Route("POST", "/staff/inbox/replies/{saved}/delete", "editor", 303),
    Route("GET", "/staff/account/tokens", "viewer", 200),
    Route("POST", "/staff/account/tokens", "viewer", 200, (("name", "Reporting"),)),
    Route("POST", "/staff/account/tokens/{token}/revoke", "viewer", 303),
    Route("GET", "/staff/account/test-sends", "editor", 200),
    Route("POST", "/staff/account/test-sends/code", "editor", 200),
    Route("POST", "/staff/account/test-sends/sms/unlink", "editor", 303),
    Route("GET", "/staff/account", "viewer", 200),
    Route("POST", "/staff/account/name", "viewer", 303, (("name", "Sam Patel"),)),
    Route("POST", "/staff/account/password", "viewer", 400, (
        ("password", "not the password"), ("new_password", "a new password here"),
        ("again", "a new password here"))),
    Route("GET", "/staff/account/two-factor", "viewer", 200),
    Route("POST", "/staff/account/two-factor", "viewer", 303, (("code", "000000"),)),
    Route("POST", "/staff/account/two-factor/off", "viewer", 400,
          (("password", PASSWORD), ("code", "000000"))),
    Route("POST", "/staff/account/two-factor/recovery-codes", "viewer", 400,
          (("password", PASSWORD),)),
    Route("GET", "/staff/colleagues", "admin", 200),
    Route("POST", "/staff/colleagues", "admin", 200,
          (("email", "kim@planets.example"), ("role", "viewer"))),
    Route("POST", "/staff/colleagues/{colleague}/role", "admin", 303, (("role", "viewer"),)),
    Route("POST", "/staff/colleagues/{colleague}/deactivate", "admin", 303),
    Route("POST", "/staff/colleagues/{colleague}/reactivate", "admin", 303),
    Route("POST", "/staff/colleagues/invites/{invite}/revoke", "admin", 303),
    Route("GET", "/staff/petitions", "viewer", 200),
    Route("GET", "/staff/petitions/new", "editor", 200),
    Route("POST", "/staff/petitions/new", "editor", 400),  # an empty form: nothing made
    Route("POST", "/staff/petitions/preview", "editor", 200),
    Route("GET", "/staff/petitions/sirt/edit", "editor", 200),
    Route("POST", "/staff/petitions/sirt/edit", "editor", 400),  # empty: nothing saved
    Route("POST", "/staff/petitions/sirt/close", "editor", 303),
    Route("POST", "/staff/petitions/sirt/reopen", "editor", 303),
    Route("GET", "/staff/petitions/sirt/history", "viewer", 200),
    Route("POST", "/staff/petitions/sirt/versions/1/restore", "editor", 303),
    Route("GET", "/staff/receivers", "admin", 200),
    Route("POST", "/staff/receivers", "admin", 400, (("url", "ftp://crm.example/x"),)),
    Route("GET", "/staff/receivers/{receiver}", "admin", 200),
    Route("POST", "/staff/receivers/{receiver}/ping", "admin", 303),
    Route("POST", "/staff/receivers/{receiver}/send-again", "admin", 303),
    Route("GET", "/staff/receivers/{receiver}/remove", "admin", 200),
    Route("POST", "/staff/receivers/{receiver}/remove", "admin", 303),
    Route("POST", "/staff/logout", "viewer", 302),
]
ONES = {"draft": 1, "voice": 1, "supporter": 1, "conversation": 1, "message": 1, "saved": 1,
        "token": 1, "colleague": 1, "invite": 1, "receiver": 1}
RANK = ["viewer", "editor", "admin"]


@pytest.fixture
def world(app: Flask, twilio: FlaskClient, config: Config, staff_ids: dict[str, int],
          sessions: sessionmaker[Session]) -> dict[str, int]:
    """A signer with a voice, and an editor's draft: something for every route to act on."""
    signer(twilio, AMIRA, "Amira Khan", "EH1 1AA")
    with sessions.begin() as session:
        supporter = session.scalar(select(Supporter.id).where(Supporter.phone == AMIRA))
        assert supporter is not None
        petition = session.scalar(select(Petition.id))
        assert petition is not None
        voice = Voice(petition_id=petition, supporter_id=supporter, text="For my mum.",
                      nation="scotland", status="pending", publish_consent=True,
                      flagged=False, created_at=dt.datetime.now(dt.UTC))
        session.add(voice)
        session.flush()
        voice_id = voice.id
    draft = draft_by(sessions, config, email_of("editor"))
    conversation = waiting(sessions, "+447700900555", "Is there a march?", flagged=True)
    with sessions.begin() as session:
        message = session.scalar(select(InboxMessage.id).where(
            InboxMessage.conversation_id == conversation))
        saved = SavedReply(title="Hand-in", text="On Friday.", created_by=email_of("editor"),
                           created_at=dt.datetime.now(dt.UTC))
        session.add(saved)
        user = session.get(StaffUser, staff_ids["admin"])
        assert message is not None and user is not None
        token = api_tokens.issue(session, user, "script", dt.datetime.now(dt.UTC)).id
        invite = invites.invite(session, "lee@planets.example", "viewer", user,
                                dt.datetime.now(dt.UTC)).invite.id
        session.flush()
        saved_id = saved.id
        receiver, _ = event_receivers.add(session, "http://127.0.0.1:9/crm",
                                          ["signature.created"], email_of("admin"),
                                          config.api, dt.datetime.now(dt.UTC))
    return {"draft": draft, "voice": voice_id, "supporter": supporter,
            "conversation": conversation, "message": message, "saved": saved_id,
            "token": token, "colleague": staff_ids["editor"], "invite": invite,
            "receiver": receiver.id}


def test_the_role_table_covers_every_console_route(app: Flask) -> None:
    from webhooks.console.access import ROLES

    declared = {rule.endpoint for rule in app.url_map.iter_rules()
                if rule.endpoint.startswith("staff.")}
    assert declared == set(ROLES), "every console view is declared with route(rule, role)"
    adapter = app.url_map.bind("localhost")
    tested = {adapter.match(r.path.split("?")[0].format(**ONES),
                            method=r.method)[0] for r in ROUTES}
    assert tested | {"staff.login", "staff.login_code", "staff.invite", "staff.static"} == declared
    for r in ROUTES:
        endpoint = adapter.match(r.path.split("?")[0].format(**ONES),
                                 method=r.method)[0]
        assert ROLES[endpoint] == r.role, endpoint


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_checks_the_role(route: Route, app: Flask,
                                     world: dict[str, int]) -> None:
    path = route.path.format(**world)
    data = dict(route.data)
    for role in (None, "viewer", "editor", "admin"):
        b = browser(app, role)
        response = b.get(path) if route.method == "GET" else b.post(path, data)
        who = role or "anonymous"
        if role is None:
            if path.split("?")[0].endswith(".json"):
                assert response.status_code == 401, who
            else:
                assert response.status_code == 302, who
                assert response.headers["Location"].startswith("/staff/login?next="), who
        elif RANK.index(role) < RANK.index(route.role):
            assert response.status_code == 403, (who, response.status_code)
            assert f"needs the {route.role} role" in response.get_data(as_text=True)
        else:
            assert response.status_code == route.ok, (who, response.get_data(as_text=True))
            if response.status_code in (302, 303) and not path.endswith("/logout"):
                assert "/staff/login" not in response.headers["Location"], who


def test_console_pages_send_security_headers(app: Flask, staff_ids: dict[str, int]) -> None:
    response = browser(app, "viewer").get("/staff/")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    css = browser(app).get("/staff/static/console.css")
    assert css.status_code == 200 and "no-store" not in css.headers.get("Cache-Control", "")


# Announcements ------------------------------------------------------------------------

@pytest.fixture
def subscribers(twilio: FlaskClient, sessions: sessionmaker[Session]) -> None:
    """Two SMS and two WhatsApp subscribers; one WhatsApp one last wrote two days ago."""
    signer(twilio, AMIRA, "Amira Khan", "EH1 1AA")
    signer(twilio, BEN, "Ben Jones", "CF10 1AA")
    signer(twilio, CARYS, "Carys Evans", "LL11 1AA", channel="whatsapp")
    signer(twilio, "+447700900321", "Dan Smith", "M1 1AA", channel="whatsapp")
    with sessions.begin() as session:
        session.execute(update(Identity).where(Identity.address == "+447700900321",
                                               Identity.channel == "whatsapp")
                        .values(last_inbound_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))


def test_the_compose_preview_shows_segments_unicode_cost_and_the_whatsapp_window(
        app: Flask, staff_ids: dict[str, int], subscribers: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    from bot.core.gsm import segments

    b = browser(app, "editor")
    with sessions() as session:
        identities_before = session.scalar(select(func.count()).select_from(Identity))
    text = ("Thank you \u201call\u201d \u2013 we reached our goal \U0001F600 " + "x" * 120
            + " <b>now</b>")
    data = b.json("/staff/announcements/preview.json", {"text": text}).get_json()
    assert data["recipients"] == {"sms": 2, "whatsapp": 2, "telegram": 0}
    assert data["total"] == 4
    sms = data["sms"]
    assert sms["encoding"] == "GSM-7" and "\u2013" not in sms["text"]
    assert sms["segments"] == segments(sms["text"]) == 2
    assert [u["character"] for u in sms["unicode_characters"]] == [
        "\u201c", "\u201d", "\u2013", "\U0001F600"]
    assert sms["unicode_characters"][2] == {"character": "\u2013", "name": "EN DASH",
                                            "becomes": "-"}
    unicode_text = broadcast.compose(text, "whatsapp", config)  # before GSM-7 folding
    assert sms["unicode_segments"] == segments(unicode_text) == 4  # UCS-2 would cost 4
    assert sms["price"] == 0.04 and sms["cost"] == round(2 * 2 * 0.04, 2)
    assert data["whatsapp"]["outside_window"] == 1
    assert data["whatsapp"]["template"] is False
    assert "&lt;b&gt;now&lt;/b&gt;" in data["telegram"]["html"]
    assert data["telegram"]["text"].endswith("Send STOP to stop these messages.")
    assert data["errors"] == {}

    with_template = b.json("/staff/announcements/preview.json", {
        "text": "Hi", "channels": "whatsapp",
        "template_sid": "HX" + "a" * 32}).get_json()
    assert "whatsapp" in with_template and "sms" not in with_template
    assert with_template["whatsapp"]["template"] is True
    assert with_template["recipients"] == {"whatsapp": 2}

    wales = b.json("/staff/announcements/preview.json", {
        "text": "Hi Wales", "nations": "wales"}).get_json()
    assert wales["recipients"] == {"sms": 1, "whatsapp": 1, "telegram": 0}
    area = b.json("/staff/announcements/preview.json", {"text": "Hi", "areas": "eh"}).get_json()
    assert area["total"] == 1
    wrong = b.json("/staff/announcements/preview.json", {"text": "Hi", "areas": "E1"}).get_json()
    assert "areas" in wrong["errors"]
    test_group = b.json("/staff/announcements/preview.json", {"text": "Hi",
                                                               "test_group": "y"}).get_json()
    assert test_group["recipients"] == {"sms": 1, "whatsapp": 0, "telegram": 1}
    with sessions() as session:  # previewing wrote nothing
        assert session.scalar(select(func.count()).select_from(Announcement)) == 0
        assert session.scalar(select(func.count()).select_from(Identity)) == identities_before


def test_the_compose_page_saves_a_draft_with_its_audience(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    b = browser(app, "editor")
    page = b.get("/staff/announcements/new").get_data(as_text=True)
    assert 'data-preview="/staff/announcements/preview.json"' in page
    assert "compose.js" in page and "<label" in page
    made = b.post("/staff/announcements/new", {
        "text": "Scotland: we meet MSPs on Friday.", "channels": ["sms", "telegram"],
        "nations": "scotland", "areas": "eh, g", "template_sid": ""})
    assert made.status_code == 302
    with sessions() as session:
        draft = session.scalars(select(Announcement)).one()
        assert (draft.status, draft.created_by) == ("draft", email_of("editor"))
        assert (draft.channels, draft.nations, draft.postcode_areas) == (
            ["sms", "telegram"], ["scotland"], ["EH", "G"])
    shown = b.get(made.headers["Location"]).get_data(as_text=True)
    assert "Scotland: we meet MSPs on Friday." in shown and "Draft saved" in shown
    refused = b.post("/staff/announcements/new", {"text": "", "areas": "12"})
    assert refused.status_code == 200 and "This field is required" in refused.get_data(
        as_text=True)
    edited = b.post(f"/staff/announcements/{draft.id}/edit", {"text": "Edited text"})
    assert edited.status_code == 302
    with sessions() as session:
        again = session.get(Announcement, draft.id)
        assert again is not None and again.text == "Edited text" and again.channels == []
    assert [a for _, a, _ in audit_actions(sessions) if a.startswith("announcement")] == [
        "announcement.create", "announcement.edit"]


def test_a_second_staff_member_must_approve_when_config_requires_it(
        app: Flask, staff_ids: dict[str, int], subscribers: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    admin, admin2 = browser(app, "admin"), browser(app)
    admin2.login("admin2@planets.example")
    mine = draft_by(sessions, config, email_of("admin"))
    refused = admin.post(f"/staff/announcements/{mine}/approve", {"when": "now"})
    assert refused.status_code == 303
    assert "another staff member must approve it" in admin.get(
        refused.headers["Location"]).get_data(as_text=True)
    assert status_of(sessions, mine) == "draft"
    page = admin.get(f"/staff/announcements/{mine}").get_data(as_text=True)
    assert "another admin must approve it" in page
    approved = admin2.post(f"/staff/announcements/{mine}/approve",
                           {"when": "now", "confirm": "yes"})  # at night it asks first
    assert approved.status_code == 303
    assert status_of(sessions, mine) == "sending"
    with sessions() as session:
        found = session.get(Announcement, mine)
        assert found is not None and found.approved_by == "admin2@planets.example"
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.announcement_id == mine)) == 4
    assert ("admin2@planets.example", "announcement.approve",
            f"announcement:{mine}") in audit_actions(sessions)


def test_without_the_rule_an_admin_may_approve_their_own(
        settings: Settings, tmp_path: Path, sessions: sessionmaker[Session],
        config: Config) -> None:
    from webhooks import create_app

    relaxed = create_app(dataclasses.replace(
        settings, config_path=str(write_config(tmp_path, second_approval=False))))
    console_setup(relaxed, tmp_path)
    try:
        add_people(sessions)
        mine = draft_by(sessions, config, email_of("admin"))
        b = browser(relaxed, "admin")
        assert b.post(f"/staff/announcements/{mine}/approve",
                      {"when": "now", "confirm": "yes"}).status_code == 303
        assert status_of(sessions, mine) == "sending"
    finally:
        relaxed.extensions["petitionbot"].engine.dispose()


def test_an_announcement_is_tested_scheduled_sent_paused_resumed_and_cancelled(
        app: Flask, staff_ids: dict[str, int], subscribers: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    editor, admin = browser(app, "editor"), browser(app, "admin")
    draft = draft_by(sessions, config, email_of("editor"))
    tested = editor.post(f"/staff/announcements/{draft}/test")
    assert tested.status_code == 302
    with sessions() as session:
        test = session.scalars(select(Announcement).where(Announcement.test_group)).one()
        assert test.status == "sending" and test.id != draft
        sent_to = set(session.execute(select(Identity.channel, Identity.address).join(
            Delivery, Delivery.identity_id == Identity.id).where(
            Delivery.announcement_id == test.id)).all())
        assert sent_to == {("sms", "+447700900999"), ("telegram", "4242")}
    assert status_of(sessions, draft) == "draft"  # the test changed nothing of the draft

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    local = later.astimezone(__import__("zoneinfo").ZoneInfo("Europe/London"))
    scheduled = admin.post(f"/staff/announcements/{draft}/approve", {
        "when": "later", "at": local.strftime("%Y-%m-%dT%H:%M"), "confirm": "yes"})
    assert scheduled.status_code == 303
    with sessions() as session:
        found = session.get(Announcement, draft)
        assert found is not None and found.status == "scheduled"
        assert found.scheduled_at is not None
        assert abs((found.scheduled_at - later).total_seconds()) < 60
    past = draft_by(sessions, config, email_of("editor"))
    admin.post(f"/staff/announcements/{past}/approve", {"when": "later",
                                                        "at": "2020-01-01T09:00"})
    assert status_of(sessions, past) == "draft"

    now_one = draft_by(sessions, config, email_of("editor"))
    admin.post(f"/staff/announcements/{now_one}/approve", {"when": "now", "confirm": "yes"})
    progress = admin.get(f"/staff/announcements/{now_one}/progress.json").get_json()
    assert progress["status"] == "sending" and progress["counts"]["pending"] == 4
    assert progress["done"] is False
    assert admin.post(f"/staff/announcements/{now_one}/pause").status_code == 303
    assert admin.get(f"/staff/announcements/{now_one}/progress.json").get_json()[
        "status"] == "paused"
    admin.post(f"/staff/announcements/{now_one}/resume")
    assert status_of(sessions, now_one) == "sending"
    page = admin.get(f"/staff/announcements/{now_one}").get_data(as_text=True)
    assert 'data-url="/staff/announcements/' in page and "announcement.js" in page
    admin.post(f"/staff/announcements/{now_one}/cancel")
    final = admin.get(f"/staff/announcements/{now_one}/progress.json").get_json()
    assert final["status"] == "cancelled" and final["done"] is True
    assert final["counts"]["skipped"] == 4 and final["counts"]["pending"] == 0
    again = admin.post(f"/staff/announcements/{now_one}/resume")
    assert "is not paused" in admin.get(again.headers["Location"]).get_data(as_text=True)
    actions = [a for _, a, _ in audit_actions(sessions) if a.startswith("announcement")]
    assert actions == ["announcement.test", "announcement.approve", "announcement.approve",
                       "announcement.pause", "announcement.resume", "announcement.cancel"]


# Voices -------------------------------------------------------------------------------

def test_voices_flagged_first_and_only_consented_ones_can_be_approved(
        app: Flask, staff_ids: dict[str, int], world: dict[str, int],
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        petition = session.scalar(select(Petition.id))
        assert petition is not None
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        private = Voice(petition_id=petition, supporter_id=world["supporter"],
                        text="Keep this to yourselves.", status="pending",
                        publish_consent=False, flagged=False, created_at=later)
        worrying = Voice(petition_id=petition, supporter_id=world["supporter"],
                         text="I feel hopeless.", status="pending", publish_consent=True,
                         flagged=True, created_at=later)
        session.add_all([private, worrying])
        session.flush()
        ids = {"consented": world["voice"], "private": private.id, "flagged": worrying.id}
    editor = browser(app, "editor")
    queue = editor.get("/staff/voices").get_data(as_text=True)
    assert queue.index("I feel hopeless.") < queue.index("For my mum.") < queue.index(
        "Keep this to yourselves.")
    assert "flagged: safeguarding" in queue and "no consent to publish" in queue
    assert "Approve</button></form>" not in queue  # editors read; admins moderate
    admin = browser(app, "admin")
    for name, why in (("private", "did not consent"), ("flagged", "safeguarding")):
        refused = admin.post(f"/staff/voices/{ids[name]}/approve")
        assert why in admin.get(refused.headers["Location"]).get_data(as_text=True)
    admin.post(f"/staff/voices/{ids['consented']}/approve")
    admin.post(f"/staff/voices/{ids['private']}/reject")
    with sessions() as session:
        statuses = {v.id: (v.status, v.moderated_by) for v in session.scalars(select(Voice))}
    assert statuses[ids["consented"]] == ("approved", email_of("admin"))
    assert statuses[ids["private"]] == ("rejected", email_of("admin"))
    assert statuses[ids["flagged"]] == ("pending", None)
    assert [(a, t) for _, a, t in audit_actions(sessions) if a.startswith("voice")] == [
        ("voice.approve", f"voice:{ids['consented']}"),
        ("voice.reject", f"voice:{ids['private']}")]


# Supporters ---------------------------------------------------------------------------

def test_an_admin_finds_people_by_phone_or_name_with_numbers_masked(
        app: Flask, staff_ids: dict[str, int], twilio: FlaskClient) -> None:
    signer(twilio, AMIRA, "Amira Khan", "EH1 1AA")
    signer(twilio, BEN, "Ben Jones", "CF10 1AA")
    b = browser(app, "admin")
    by_phone = b.get("/staff/supporters?q=07700 900123").get_data(as_text=True)
    assert "Amira Khan" in by_phone and "Ben Jones" not in by_phone
    assert "+4477******23" in by_phone and AMIRA not in by_phone
    by_name = b.get("/staff/supporters?q=jONES").get_data(as_text=True)
    assert "Ben Jones" in by_name and "Amira Khan" not in by_name
    assert "0 people found" in b.get("/staff/supporters?q=%25").get_data(as_text=True)


def test_a_subject_access_export_holds_everything_about_the_person(
        app: Flask, staff_ids: dict[str, int], twilio: FlaskClient,
        sessions: sessionmaker[Session]) -> None:
    signer(twilio, AMIRA, "Amira Khan", "EH1 1AA")
    Texter(twilio, AMIRA, "whatsapp").says("Hello again")
    with sessions() as session:
        person = session.scalar(select(Supporter.id).where(Supporter.phone == AMIRA))
    b = browser(app, "admin")
    response = b.post(f"/staff/supporters/{person}/export.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.get_json()
    assert data["controller"] == "PLANETS Cancer Charity"
    assert data["supporter"]["phone"] == AMIRA
    assert {(i["channel"], i["address"]) for i in data["identities"]} == {
        ("sms", AMIRA), ("whatsapp", AMIRA)}
    [signature] = data["signatures"]
    assert (signature["name"], signature["postcode"], signature["nation"]) == (
        "Amira Khan", "EH1 1AA", "scotland")
    assert [(c["purpose"], c["action"]) for c in data["consent_history"]] == [
        ("sign", "granted"), ("updates", "granted")]
    assert all(c["wording_version"] for c in data["consent_history"])
    assert data["subscriptions"] == [{"petition": "sirt", "channel": "sms",
                                      "since": data["subscriptions"][0]["since"]}]
    assert "Hello again" in [m["text"] for m in data["messages_received"]]
    assert ("admin@planets.example", "supporter.export",
            f"supporter:{person}") in audit_actions(sessions)
    page = b.get(f"/staff/supporters/{person}").get_data(as_text=True)
    assert "Consent history" in page and "Amira Khan" in page


def every_value(session: Session) -> list[tuple[str, str]]:
    """(table, text) of every string cell in the database."""
    found = []
    for table in Base.metadata.sorted_tables:
        text_columns = [c for c in table.columns if isinstance(c.type, String | Text)
                        or c.name in ("data", "detail")]
        for row in session.execute(select(*text_columns)) if text_columns else ():
            found += [(table.name, str(value)) for value in row if value is not None]
    return found


def test_erasure_removes_the_person_everywhere_but_keeps_a_stop_as_suppression(
        app: Flask, staff_ids: dict[str, int], twilio: FlaskClient,
        sessions: sessionmaker[Session]) -> None:
    signer(twilio, AMIRA, "Amira Khan", "EH1 1AA")
    ben = signer(twilio, BEN, "Ben Jones", "CF10 1AA")
    ben.says("STOP")
    with sessions.begin() as session:
        ids = {p: session.scalar(select(Supporter.id).where(Supporter.phone == p))
               for p in (AMIRA, BEN)}
        petition = session.scalar(select(Petition.id))
        assert petition is not None
        session.add(Voice(petition_id=petition, supporter_id=ids[AMIRA],
                          text="Amira Khan here: for my dad.", status="pending",
                          publish_consent=True, flagged=False,
                          created_at=dt.datetime.now(dt.UTC)))
    assert api_counts(twilio)["here"] == 2
    b = browser(app, "admin")
    confirm = b.get(f"/staff/supporters/{ids[BEN]}/erase").get_data(as_text=True)
    assert "They said STOP on sms" in confirm
    unconfirmed = b.post(f"/staff/supporters/{ids[AMIRA]}/erase", {"confirm": "yes"})
    assert unconfirmed.status_code == 400 and "Type ERASE" in unconfirmed.get_data(
        as_text=True)
    for person in (AMIRA, BEN):
        done = b.post(f"/staff/supporters/{ids[person]}/erase", {"confirm": "ERASE"})
        assert done.status_code == 303
    assert api_counts(twilio)["here"] == 0 and api_counts(twilio)["by_channel"]["sms"] == 0
    with sessions() as session:
        values = every_value(session)
        for secret in ("Amira", "Khan", "Ben Jones", "EH1 1AA", "CF10 1AA", AMIRA):
            assert not [v for v in values if secret in v[1]], secret
        assert [t for t, v in values if BEN in v] == ["identities"]
        kept = session.scalars(select(Identity)).one()
        assert (kept.address, kept.supporter_id) == (BEN, None)
        assert kept.opted_out_at is not None and kept.last_inbound_at is None
        for model in (Supporter, Signature, Subscription, Voice):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
        assert session.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.body.is_not(None))) == 0
    erasures = [(a, t) for _, a, t in audit_actions(sessions) if a == "supporter.erase"]
    assert erasures == [("supporter.erase", f"supporter:{ids[AMIRA]}"),
                        ("supporter.erase", f"supporter:{ids[BEN]}")]
    assert b.get(f"/staff/supporters/{ids[AMIRA]}").status_code == 404
    # Ben's number stays silenced: writing again gets nothing until START.
    assert ben.says("Hello?") == []


# Hand-in and dashboard ----------------------------------------------------------------

def test_the_signatures_csv_is_streamed_and_formula_safe(
        app: Flask, staff_ids: dict[str, int], twilio: FlaskClient,
        sessions: sessionmaker[Session]) -> None:
    signer(twilio, AMIRA, "Amira Khan", "EH1 1AA")
    signer(twilio, BEN, "Ben Jones", "CF10 1AA")
    with sessions.begin() as session:
        session.execute(update(Signature).where(Signature.name == "Ben Jones")
                        .values(name="=HYPERLINK(\"http://evil.example\")"))
    response = browser(app, "admin").get("/staff/handin/signatures.csv")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["number", "name", "postcode"]
    assert [r[1] for r in rows[1:]] == ["Amira Khan", "'=HYPERLINK(\"http://evil.example\")"]
    assert ("admin@planets.example", "export.signatures",
            "petition:sirt") in audit_actions(sessions)


def test_the_hand_in_summary_by_nation_and_area(
        app: Flask, staff_ids: dict[str, int], twilio: FlaskClient) -> None:
    signer(twilio, AMIRA, "Amira Khan", "EH1 1AA")
    signer(twilio, BEN, "Ben Jones", "CF10 1AA")
    signer(twilio, CARYS, "Carys Evans", "CF11 9AA", channel="whatsapp")
    b = browser(app, "viewer")
    page = b.get("/staff/handin").get_data(as_text=True)
    assert "49,260" in page and "Signed on Change.org" in page
    assert "<td>Wales</td><td class=\"num\">2</td>" in page
    assert "<td>CF</td><td class=\"num\">2</td>" in page
    assert "Every signature (CSV)" not in page  # a viewer cannot download names
    rows = list(csv.reader(io.StringIO(b.get("/staff/handin/summary.csv").get_data(
        as_text=True))))
    assert ["total", "49260"] in rows and ["signatures_on_Change.org", "49257"] in rows
    assert ["Wales", "CF", "2"] in rows and ["Scotland", "EH", "1"] in rows


def test_the_dashboard_shows_the_count_its_sources_and_a_chart(
        app: Flask, staff_ids: dict[str, int], subscribers: None, config: Config,
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.execute(update(Signature).where(Signature.name == "Amira Khan")
                        .values(referral="r1"))
    page = browser(app, "viewer").get("/staff/").get_data(as_text=True)
    assert "49,261" in page and "49,257 on Change.org + 4 here" in page
    assert "<svg" in page and 'role="img"' in page
    assert "4 signatures in 60 days" in page
    assert "<dt>WhatsApp</dt><dd>2</dd>" in page
    assert "100%" in page  # all four asked for updates
    assert "<td>r1</td>" in page and "<td>direct</td>" in page
    assert "<td>Wales</td>" in page and "<td>CF</td>" in page


def test_the_audit_log_pages_newest_first(
        app: Flask, staff_ids: dict[str, int], sessions: sessionmaker[Session]) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with sessions.begin() as session:
        for i in range(120):
            session.add(AuditEntry(at=start + dt.timedelta(minutes=i), actor="cli:op",
                                   action="test.entry", target=f"n:{i}", detail={"i": i}))
    b = browser(app, "admin")
    first = b.get("/staff/audit?action=test.entry").get_data(as_text=True)
    assert "120 entries; page 1 of 3" in first
    assert "(n 119)" in first and "(n 70)" in first and "(n 69)" not in first
    last = b.get("/staff/audit?action=test.entry&page=3").get_data(as_text=True)
    assert last.count("The operator (command line): test entry (n ") == 20
    assert "(n 0)" in last
    assert "admin@planets.example (admin) signed in" in b.get("/staff/audit").get_data(
        as_text=True)


# The simulator ------------------------------------------------------------------------

def chat(b: Browser, channel: str, *messages: str) -> list[dict[str, Any]]:
    replies: list[dict[str, Any]] = []
    for text in messages:
        response = b.json(f"/staff/simulator/{channel}/send", {"text": text})
        assert response.status_code == 200, response.get_data(as_text=True)
        replies = response.get_json()["replies"]
    return replies


def test_simulator_activity_is_never_counted_anywhere(
        app: Flask, staff_ids: dict[str, int], twilio: FlaskClient,
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.shell.counts

    monkeypatch.setattr(bot.shell.counts, "COUNTS_TTL", 0.0)  # no cached count
    signer(twilio, AMIRA, "Amira Khan", "EH1 1AA")
    b = browser(app, "viewer")
    greeting = chat(b, "sms", "Hi")
    assert "49,258 people have signed" in greeting[0]["text"]  # the live count
    signed = chat(b, "sms", "SIGN", "YES", "Simon Simulated", "G1 1AA", "YES")
    assert "you have signed" in signed[0]["text"] and "49,259" in signed[0]["text"]
    chat(b, "sms", "YES")  # updates, please
    whatsapp = chat(b, "whatsapp", "Hi")  # the same simulated phone: already signed
    assert "Simon Simulated" in json.dumps(chat(b, "whatsapp", "STATUS"))
    assert whatsapp
    chat(b, "telegram", "Hi")
    telegram = b.json("/staff/simulator/telegram/send", {"press": "SIGN"}).get_json()
    assert telegram["replies"][0]["buttons"] == [{"label": "Yes", "data": "YES"},
                                                 {"label": "No", "data": "NO"}]

    assert api_counts(twilio)["here"] == 1
    assert api_counts(twilio)["by_channel"] == {"sms": 1, "whatsapp": 0, "telegram": 0}
    admin = browser(app, "admin")
    csv_rows = admin.get("/staff/handin/signatures.csv").get_data(as_text=True)
    assert "Simon" not in csv_rows and "Amira Khan" in csv_rows
    dashboard = admin.get("/staff/").get_data(as_text=True)
    assert "49,257 on Change.org + 1 here" in dashboard and "G1" not in dashboard
    assert "Simon" not in admin.get("/staff/handin").get_data(as_text=True)
    assert "0 people found" in admin.get("/staff/supporters?q=Simon").get_data(as_text=True)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1
        assert session.scalar(select(func.count()).select_from(Identity).where(
            Identity.address.like("sim:%"))) == 0
        assert session.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.provider_id.like("sim-%"))) == 0
        assert "Simon" not in json.dumps(every_value(session))

    # A real signature meanwhile shows in the simulated greeting (live + simulated).
    signer(twilio, BEN, "Ben Jones", "CF10 1AA")
    assert "49,260 people have signed" in chat(b, "telegram", "RESTART")[0]["text"]
    # Starting again forgets the simulated person on every channel.
    assert b.post("/staff/simulator/reset").status_code == 303
    fresh = chat(b, "sms", "Hi")
    assert "49,259 people have signed" in fresh[0]["text"]
    assert "SIGN" in fresh[0]["text"]


def test_the_simulator_page_works_without_javascript(
        app: Flask, staff_ids: dict[str, int]) -> None:
    b = browser(app, "editor")
    page = b.get("/staff/simulator?channel=telegram").get_data(as_text=True)
    assert "sim:" in page and "simulator.js" in page
    shown = b.post("/staff/simulator/telegram/send", {"text": "hello <b>"})
    assert shown.status_code == 200
    text = shown.get_data(as_text=True)
    assert 'name="press" value="SIGN"' in text and "hello &lt;b&gt;" in text
    assert b.get("/staff/simulator?channel=fax").status_code == 404
