"""Petitions in the console: viewers read the list and the history; editors create, edit,
preview (with or without JavaScript), close, reopen and restore; every form needs its CSRF
token, and a refused save changes nothing and says why next to the field."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from bot.infra.config import Config, Petition
from bot.shell.petition_content import live_petition
from models import AuditEntry
from tests.integration.console_helpers import Browser, add_people, email_of

NEW_SUMMARY = "NHS England funds SIRT for liver cancer but not for NET patients. Ask them " \
              "to fund it for everyone who needs it."


@pytest.fixture
def people(app: Flask) -> dict[str, int]:
    return add_people(app.extensions["petitionbot"].sessions)


@pytest.fixture
def sessions(app: Flask) -> sessionmaker[Session]:
    made: sessionmaker[Session] = app.extensions["petitionbot"].sessions
    return made


def browser(app: Flask, role: str) -> Browser:
    who = Browser(app.test_client())
    assert who.login(email_of(role)).status_code in (302, 303)
    return who


def form_of(petition: Petition, version: int = 0, press: str = "save",
            **changes: str) -> dict[str, str]:
    """The edit form as the page fills it in, with `changes` typed over it."""
    form = {"title": petition.title, "summary": petition.summary, "issue": petition.issue,
            "decision_makers": "\n".join(petition.decision_makers),
            "organiser": petition.organiser, "created": petition.created.isoformat(),
            "goal": f"{petition.goal:,}",
            "milestones": ", ".join(f"{m:,}" for m in petition.milestones),
            "share_url": petition.share_url, "closed": "", "version": str(version),
            "editing": petition.slug, "press": press}
    for i, count in enumerate(petition.external):
        form |= {f"external-{i}-source": count.source, f"external-{i}-count": str(count.count),
                 f"external-{i}-as_of": ""}
    return form | changes


def live(app: Flask, slug: str = "sirt") -> Petition:
    rt = app.extensions["petitionbot"]
    with rt.sessions() as session:
        return live_petition(session, rt.config, slug)


def text_of(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_a_viewer_reads_the_list_and_the_history_but_changes_nothing(
        app: Flask, people: dict[str, int], config: Config) -> None:
    viewer = browser(app, "viewer")
    page = viewer.get("/staff/petitions")
    assert page.status_code == 200
    assert config.petition("sirt").title in text_of(page) and "as in config.toml" in text_of(page)
    assert "Create a petition" not in text_of(page)
    assert viewer.get("/staff/petitions/sirt/history").status_code == 200
    assert viewer.get("/staff/petitions/sirt/edit").status_code == 403
    assert viewer.get("/staff/petitions/new").status_code == 403
    for path in ("/staff/petitions/sirt/edit", "/staff/petitions/sirt/close",
                 "/staff/petitions/sirt/reopen", "/staff/petitions/sirt/versions/1/restore",
                 "/staff/petitions/preview", "/staff/petitions/new"):
        assert viewer.post(path, form_of(config.petition("sirt"))).status_code == 403, path
    assert live(app) == config.petition("sirt")


def test_an_editor_changes_the_summary_and_the_history_says_who_and_what(
        app: Flask, people: dict[str, int], config: Config,
        sessions: sessionmaker[Session]) -> None:
    editor = browser(app, "editor")
    page = editor.get("/staff/petitions/sirt/edit")
    assert page.status_code == 200 and "What supporters will see" in text_of(page)
    saved = editor.post("/staff/petitions/sirt/edit",
                        form_of(config.petition("sirt"), summary=NEW_SUMMARY))
    assert saved.status_code == 303, text_of(saved)
    assert "Saved as version 2" in text_of(editor.get(saved.headers["Location"]))
    assert live(app).summary == NEW_SUMMARY
    history = text_of(editor.get("/staff/petitions/sirt/history"))
    assert "Version 2" in history and email_of("editor") in history
    assert NEW_SUMMARY in history and config.petition("sirt").summary in history
    with sessions() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "petition.edit"))
    assert entry is not None and entry.actor == email_of("editor")


@pytest.mark.parametrize(("changes", "words"), [
    ({"summary": "We\u2019re asking \u2013 now"}, "plain characters"),
    ({"goal": "lots"}, "a whole number"),
    ({"title": ""}, "must not be empty"),
    ({"external-0-count": "-5"}, "Counts collected elsewhere, row 1, count"),
])
def test_a_refused_save_says_why_and_changes_nothing(
        app: Flask, people: dict[str, int], config: Config, changes: dict[str, str],
        words: str) -> None:
    editor = browser(app, "editor")
    refused = editor.post("/staff/petitions/sirt/edit",
                          form_of(config.petition("sirt")) | changes)
    assert refused.status_code == 400
    assert "Nothing was saved" in text_of(refused) and words in text_of(refused)
    assert live(app) == config.petition("sirt")


def test_the_forms_need_their_csrf_token(app: Flask, people: dict[str, int],
                                         config: Config) -> None:
    editor = browser(app, "editor")
    for path in ("/staff/petitions/sirt/edit", "/staff/petitions/sirt/close",
                 "/staff/petitions/preview"):
        refused = editor.post(path, form_of(config.petition("sirt"), summary=NEW_SUMMARY),
                              token=False)
        assert refused.status_code == 400, path
    assert live(app) == config.petition("sirt")


def test_preview_without_javascript_shows_each_channel_and_saves_nothing(
        app: Flask, people: dict[str, int], config: Config) -> None:
    editor = browser(app, "editor")
    shown = editor.post("/staff/petitions/sirt/edit", form_of(
        config.petition("sirt"), press="preview", summary=NEW_SUMMARY))
    assert shown.status_code == 200
    page = text_of(shown)
    for channel in ("SMS", "WhatsApp", "Telegram"):
        assert f"{channel}: " in page
    assert page.count(NEW_SUMMARY) >= 4  # the form, and the greeting on each channel
    assert re.search(r"\d+ SMS segments? \(GSM-7\)", page)
    assert "The issue (MORE), page 1 of" in page
    assert live(app) == config.petition("sirt")


def test_the_preview_fragment_follows_the_form_as_staff_type(
        app: Flask, people: dict[str, int], config: Config) -> None:
    editor = browser(app, "editor")
    fragment = editor.post("/staff/petitions/preview", form_of(
        config.petition("sirt"), summary=NEW_SUMMARY), headers={"Accept": "text/html"})
    assert fragment.status_code == 200
    assert NEW_SUMMARY in text_of(fragment) and "<html" not in text_of(fragment)
    curly = editor.post("/staff/petitions/preview", form_of(
        config.petition("sirt"), summary="We\u2019re asking"))
    assert "Not ready to save yet" in text_of(curly) and "plain characters" in text_of(curly)
    assert live(app) == config.petition("sirt")


def test_an_editor_restores_the_files_version_from_the_history(
        app: Flask, people: dict[str, int], config: Config) -> None:
    editor = browser(app, "editor")
    editor.post("/staff/petitions/sirt/edit", form_of(config.petition("sirt"),
                                                      summary=NEW_SUMMARY))
    restored = editor.post("/staff/petitions/sirt/versions/1/restore")
    assert restored.status_code == 303
    page = text_of(editor.get(restored.headers["Location"]))
    assert "Version 1 is live again, saved as version 3" in page
    assert "restored version 1" in page
    assert live(app).summary == config.petition("sirt").summary
    missing = editor.post("/staff/petitions/sirt/versions/9/restore")
    assert "has no version 9" in text_of(editor.get(missing.headers["Location"]))


def test_a_save_on_a_page_someone_has_saved_since_is_stopped(
        app: Flask, people: dict[str, int], config: Config) -> None:
    editor, admin = browser(app, "editor"), browser(app, "admin")
    admin.post("/staff/petitions/sirt/edit", form_of(config.petition("sirt"), goal="120,000"))
    stale = editor.post("/staff/petitions/sirt/edit", form_of(
        config.petition("sirt"), version=0, summary=NEW_SUMMARY))
    assert stale.status_code == 400 and "Someone saved version 2" in text_of(stale)
    assert live(app).goal == 120_000 and live(app).summary == config.petition("sirt").summary


def test_an_editor_closes_and_reopens_a_petition(app: Flask, people: dict[str, int]) -> None:
    editor = browser(app, "editor")
    closed = editor.post("/staff/petitions/sirt/close")
    assert closed.status_code == 303 and live(app).closed is not None
    assert "closed" in text_of(editor.get("/staff/petitions"))
    editor.post("/staff/petitions/sirt/reopen", {"back": "list"})
    assert live(app).closed is None


def test_an_editor_creates_a_petition_and_its_dashboard_opens(
        app: Flask, people: dict[str, int]) -> None:
    editor = browser(app, "editor")
    assert editor.get("/staff/petitions/new").status_code == 200
    fields: dict[str, Any] = {
        "slug": "scans", "code": "", "title": "Fund faster scans",
        "summary": "Ask the health board to fund faster scans.",
        "issue": "Waiting weeks for a scan is too long.", "decision_makers": "The health board",
        "organiser": "PLANETS Cancer Charity", "created": "2026-12-01", "goal": "5,000",
        "milestones": "1,000, 2,500", "share_url": "", "closed": "",
        "external-0-source": "", "external-0-count": "", "external-0-as_of": "",
        "press": "save"}
    created = editor.post("/staff/petitions/new", fields)
    assert created.status_code == 303, text_of(created)
    assert created.headers["Location"].endswith("/staff/petitions/scans/edit")
    scans = live(app, "scans")
    assert (scans.code, scans.goal, scans.milestones) == ("SCANS", 5000, (1000, 2500))
    assert "Fund faster scans" in text_of(editor.get("/staff/petitions"))
    assert editor.get("/staff/?petition=scans").status_code == 200
    clash = editor.post("/staff/petitions/new", fields)
    assert clash.status_code == 400 and "already used by another petition" in text_of(clash)


def test_the_dashboard_shows_the_change_org_count_an_admin_updated(
        app: Flask, people: dict[str, int], config: Config) -> None:
    admin = browser(app, "admin")
    admin.post("/staff/petitions/sirt/edit", form_of(config.petition("sirt")) | {
        "external-0-count": "52,400", "external-0-as_of": "2026-12-04"})
    assert live(app).external_count == 52_400
    assert "52,400 on Change.org" in text_of(admin.get("/staff/"))
