"""Bot texts in the staff console (/staff/texts): admins only, every text listed with where
its wording comes from, an edit page with its fields, errors in words, a preview per channel
without JavaScript, save, reset, and the consent versions a consent change makes."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.texts import DEFAULTS
from bot.infra.config import Config
from bot.shell import bot_texts
from models import AuditEntry, BotText, ConsentVersion
from tests.integration.console_helpers import Browser, add_people, email_of

FILE_VERSION = "2026-11-27"
CONSENT = ("We store your name, postcode and this contact to count your signature for "
           "{decision_makers}. You must be {minimum_age} or over. Privacy notice: {privacy_url}")


@pytest.fixture
def app(app: Flask, tmp_path: Path) -> Flask:
    app.config.update(WTF_CSRF_ENABLED=False, STAFF_CACHE_SECONDS=0,
                      STAFF_SIMULATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'simulator.db'}")
    return app


@pytest.fixture
def staff(app: Flask, sessions: sessionmaker[Session]) -> dict[str, int]:
    return add_people(sessions)


def browser(app: Flask, role: str | None, csrf: bool = False) -> Browser:
    b = Browser(app.test_client(), csrf=csrf)
    if role:
        assert b.login(email_of(role)).status_code == 302
    return b


def page(b: Browser, path: str) -> str:
    response = b.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def reworded(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as session:
        return {row.key: row.text for row in session.scalars(select(BotText))}


def test_only_admins_may_read_or_change_the_bot_texts(
        app: Flask, staff: dict[str, int], sessions: sessionmaker[Session]) -> None:
    asks = [("GET", "/staff/texts", None), ("GET", "/staff/texts/greeting", None),
            ("POST", "/staff/texts/greeting", {"text": "Hi {organiser}", "action": "save"}),
            ("POST", "/staff/texts/greeting/reset", {})]
    for role in ("viewer", "editor"):
        b = browser(app, role)
        for method, path, data in asks:
            response = b.get(path) if method == "GET" else b.post(path, data)
            assert response.status_code == 403, (role, path)
            assert "needs the admin role" in response.get_data(as_text=True)
        assert "Bot texts" not in page(b, "/staff/")
    anonymous = browser(app, None)
    assert anonymous.get("/staff/texts").headers["Location"].startswith("/staff/login?next=")
    assert reworded(sessions) == {}

    admin = browser(app, "admin")
    assert 'href="/staff/texts"' in page(admin, "/staff/")
    assert page(admin, "/staff/texts")
    assert admin.get("/staff/texts/no_such_text").status_code == 404


def test_the_list_shows_every_text_its_wording_and_where_it_comes_from(
        app: Flask, staff: dict[str, int], sessions: sessionmaker[Session],
        config: Config) -> None:
    admin = browser(app, "admin")
    admin.post("/staff/texts/greeting", {"text": "Hi from {organiser}!", "action": "save"})
    listed = page(admin, "/staff/texts")
    for key in DEFAULTS:
        assert f'id="text-{key}"' in listed, key
    blocks = {key: listed.split(f'id="text-{key}"')[1].split("</article>")[0]
              for key in DEFAULTS}
    assert "Changed here" in blocks["greeting"] and "Hi from {organiser}!" in blocks["greeting"]
    assert email_of("admin") in blocks["greeting"]
    assert "Wording from config.toml" in blocks["signpost"]
    assert html.escape(config.safeguarding.reply, quote=False) in blocks["signpost"]
    assert "Built-in wording" in blocks["help"]
    assert "<code>{contact}</code>, <code>{short_name}</code>" in blocks["help"]
    assert "Uses no fields" in blocks["ask_name"]


def test_an_admin_previews_a_wording_on_each_channel_then_saves_it(
        app: Flask, staff: dict[str, int], sessions: sessionmaker[Session]) -> None:
    admin = browser(app, "admin")
    editing = page(admin, "/staff/texts/greeting")
    assert "<code>{organiser}</code>" in editing and "who started the petition" in editing
    assert "The wording now" in editing and "Reset to default" not in editing

    wording = "Hi & welcome from {organiser}!\r\n{count} people have signed {title}."
    shown = admin.post("/staff/texts/greeting", {"text": wording, "action": "preview"})
    assert shown.status_code == 200
    body = shown.get_data(as_text=True)
    assert "not saved yet" in body
    sms = body.split('id="preview-sms"')[1].split("</article>")[0]
    assert "Hi &amp; welcome from PLANETS Cancer Charity!\n50,491 people have signed" in sms
    assert "GSM-7, <strong>1 segment(s)</strong>" in sms
    telegram = body.split('id="preview-telegram"')[1].split("</article>")[0]
    assert "Hi &amp;amp; welcome" in telegram  # as sent: HTML, so the & is escaped
    assert 'id="preview-whatsapp"' in body
    assert reworded(sessions) == {}  # a preview saves nothing

    saved = admin.post("/staff/texts/greeting", {"text": wording, "action": "save"})
    assert saved.status_code == 303 and saved.headers["Location"] == "/staff/texts/greeting"
    after = page(admin, "/staff/texts/greeting")
    assert "Saved. The bot says it from the next message on." in after
    assert "Reset to default" in after and "the built-in wording" in after
    assert reworded(sessions) == {"greeting": wording.replace("\r\n", "\n")}
    with sessions() as session:
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.action.startswith("text."))).one()
    assert (entry.actor, entry.action, entry.target) == (email_of("admin"), "text.save",
                                                         "text:greeting")

    reset = admin.post("/staff/texts/greeting/reset")
    assert reset.status_code == 303
    assert "Back to the default wording." in page(admin, "/staff/texts/greeting")
    assert reworded(sessions) == {}


def test_a_wording_that_cannot_be_used_is_explained_and_kept_in_the_form(
        app: Flask, staff: dict[str, int], sessions: sessionmaker[Session]) -> None:
    admin = browser(app, "admin")
    wording = "Questions? Text {phone_number} \u2013 we\u2019re here"
    for action in ("save", "preview"):
        refused = admin.post("/staff/texts/help", {"text": wording, "action": action})
        assert refused.status_code == 400
        body = refused.get_data(as_text=True)
        assert "This wording cannot be used yet" in body
        assert ("{phone_number} is not a field this text can use (it may use {contact}, "
                "{short_name})") in body
        assert "Use plain characters only (SMS cannot carry curly quotes" in body
        assert html.escape(wording, quote=False) in body  # what they typed, to put right
        assert 'aria-invalid="true"' in body and "Put right what is listed above" in body
    assert reworded(sessions) == {}


def test_saving_the_consent_makes_a_new_version_shown_in_its_history(
        app: Flask, staff: dict[str, int], sessions: sessionmaker[Session],
        config: Config) -> None:
    admin = browser(app, "admin")
    before = page(admin, "/staff/texts/consent")
    assert "Saving a change makes a new consent version" in before
    assert "before any change here" in before and FILE_VERSION in before

    refused = admin.post("/staff/texts/consent", {"text": "We keep your name.",
                                                  "action": "save"})
    assert refused.status_code == 400
    assert "Must state the minimum age" in refused.get_data(as_text=True)

    admin.post("/staff/texts/consent", {"text": CONSENT, "action": "save"})
    after = page(admin, "/staff/texts/consent")
    assert f"New signers are asked under consent version {FILE_VERSION}+1" in after
    versions = after.split('id="versions"')[1].split("</table>")[0]
    assert f"{FILE_VERSION}+1" in versions and email_of("admin") in versions
    assert "config.toml" in versions
    in_use = [row for row in versions.split("<tr")[1:] if "in use now" in row]
    assert len(in_use) == 1 and f"{FILE_VERSION}+1" in in_use[0]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConsentVersion)) == 2
        assert bot_texts.live_version(session) == f"{FILE_VERSION}+1"

    admin.post("/staff/texts/consent/reset")
    with sessions() as session:
        assert bot_texts.live_version(session) is None
    assert "Back to the default wording." in page(admin, "/staff/texts/consent")


def test_a_post_without_the_csrf_token_is_refused_and_saves_nothing(
        app: Flask, staff: dict[str, int], sessions: sessionmaker[Session]) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    admin = browser(app, "admin", csrf=True)
    forged = admin.post("/staff/texts/greeting", {"text": "Hi {organiser}", "action": "save"},
                        token=False)
    assert forged.status_code == 400 and "form has expired" in forged.get_data(as_text=True)
    assert admin.post("/staff/texts/greeting/reset", token=False).status_code == 400
    assert reworded(sessions) == {}
    saved = admin.post("/staff/texts/greeting", {"text": "Hi {organiser}", "action": "save"})
    assert saved.status_code == 303
    assert reworded(sessions) == {"greeting": "Hi {organiser}"}
