"""Petitions' content staff change without an engineer (#15): every save checked by
config.toml's rules, kept as a version with who made it, audited with the values before
and after, restorable; the bot, the public JSON, the dashboard, retention and the
simulator all use the live content, on every process, from the next message on; start-up
names what in config.toml the database overrides."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel
from bot.infra.config import Config, ConfigError, load_config
from bot.infra.settings import Settings
from bot.shell import petition_versions
from bot.shell.content import LiveContent
from bot.shell.dashboard import totals
from bot.shell.petition_content import live_petition, live_petitions, overridden
from bot.shell.retention import expired_petitions
from bot.shell.service import Received, Service
from bot.shell.simulator import Sandbox
from models import AuditEntry, ChannelCount, Petition, PetitionVersion
from models.tables import content_state
from tests.conftest import serving, together

EDITOR = "editor@planets.example"
ADMIN = "admin@planets.example"
NOW = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)
NEW_SUMMARY = "NHS England funds SIRT for liver cancer but not for NET patients. Ask them " \
              "to fund it for everyone who needs it."
SCANS = {"slug": "scans", "code": "SCANS", "title": "Fund faster scans",
         "summary": "Ask the health board to fund faster scans.",
         "issue": "Waiting weeks for a scan is too long. Ask the health board to act.",
         "decision_makers": ["The health board"], "organiser": "PLANETS Cancer Charity",
         "created": "2026-12-01", "goal": 5000}


def edit(sessions: sessionmaker[Session], config: Config, changes: dict[str, Any],
         actor: str = EDITOR, slug: str = "sirt") -> None:
    with sessions.begin() as session:
        petition_versions.edit(session, config, slug, changes, actor, NOW)


def says(service: Service, text: str, address: str = "+447700900123",
         channel: Channel = Channel.SMS) -> str:
    handled = service.receive(Received(channel, address, text, f"SM{uuid.uuid4().hex}",
                                       phone=address))
    return "\n".join(reply.text for reply in handled.replies)


def revision(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(content_state.c.revision)) or 0)


# Saving, versions, audit --------------------------------------------------------------------

def test_an_editors_summary_reaches_another_process_on_its_next_message(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    other = Service(config, sessions)  # another process: its own copy of the content
    assert config.petition("sirt").summary in says(other, "Hi")
    edit(sessions, config, {"summary": NEW_SUMMARY})
    assert NEW_SUMMARY in says(other, "Hi", address="+447700900456")
    assert NEW_SUMMARY in says(service, "Hi", address="+447700900789")


def test_every_save_is_a_version_and_the_first_keeps_the_files_content(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    edit(sessions, config, {"summary": NEW_SUMMARY})
    edit(sessions, config, {"goal": 150_000}, actor=ADMIN)
    with sessions() as session:
        history = petition_versions.versions(session, config, "sirt")
    assert [(v.number, v.actor, v.live) for v in history] == [
        (3, ADMIN, True), (2, EDITOR, False), (1, "config.toml", False)]
    assert history[0].changes == {"goal": (100_000, 150_000)}
    assert history[1].changes == {"summary": (config.petition("sirt").summary, NEW_SUMMARY)}
    assert history[2].content["summary"] == config.petition("sirt").summary
    with sessions() as session:
        row = session.scalar(select(Petition).where(Petition.slug == "sirt"))
        assert row is not None and row.content_version == 3 and row.content is not None
        assert row.content["goal"] == 150_000 and row.content["summary"] == NEW_SUMMARY


def test_each_change_is_audited_with_its_previous_and_new_value(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    before = config.petition("sirt").external
    edit(sessions, config, {"external": [{"source": "Change.org", "count": 51_002,
                                          "as_of": "2026-12-04"}]}, actor=ADMIN)
    with sessions() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "petition.edit"))
    assert entry is not None and entry.actor == ADMIN and entry.target == "petition:sirt"
    assert entry.detail == {"version": 2, "changed": {"external": {
        "before": [{"source": e.source, "count": e.count} for e in before],
        "after": [{"source": "Change.org", "count": 51_002, "as_of": "2026-12-04"}]}}}
    with sessions() as session:
        sirt = live_petition(session, config, "sirt")
    assert sirt.external[0].as_of == dt.date(2026, 12, 4) and sirt.external_count == 51_002


def test_restoring_saves_the_old_version_again_as_the_newest(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    edit(sessions, config, {"summary": NEW_SUMMARY, "title": "Fund SIRT for NET patients"})
    with sessions.begin() as session:
        petition_versions.restore(session, config, "sirt", 1, ADMIN, NOW)
    with sessions() as session:
        history = petition_versions.versions(session, config, "sirt")
        restored = session.scalar(select(AuditEntry).where(
            AuditEntry.action == "petition.restore"))
    assert [v.number for v in history] == [3, 2, 1]
    assert history[0].note == "restored version 1" and history[0].actor == ADMIN
    assert history[0].content == history[2].content
    assert set(history[0].changes) == {"summary", "title"}
    assert restored is not None and restored.detail is not None
    assert restored.detail["note"] == "restored version 1"
    assert restored.detail["changed"]["summary"] == {
        "before": NEW_SUMMARY, "after": config.petition("sirt").summary}
    assert config.petition("sirt").summary in says(service, "Hi")


def test_saving_what_is_already_live_saves_nothing(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    moved = revision(sessions)
    edit(sessions, config, {"summary": config.petition("sirt").summary})
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PetitionVersion)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0
    assert revision(sessions) == moved


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"summary": "We\u2019re asking NHS England \u2013 now"}, "summary", "plain characters"),
    ({"summary": "x" * 201}, "summary", "at most 200"),
    ({"title": ""}, "title", "must not be empty"),
    ({"issue": "  "}, "issue", "missing"),
    ({"goal": 0}, "goal", "positive"),
    ({"goal": "lots"}, "goal", "must be int"),
    ({"decision_makers": []}, "decision_makers", "a list of names"),
    ({"external": [{"source": "Change.org", "count": -1}]}, "external", "must not be negative"),
    ({"external": [{"source": "Change.org", "count": 5, "as_of": "yesterday"}]}, "external",
     "a date like"),
    ({"created": "2026-02-30"}, "created", "a date like"),
    ({"closed": "2020-01-01"}, "closed", "before the petition was created"),
    ({"milestones": [50_000, -5]}, "milestones", "positive whole numbers"),
    ({"share_url": "change.org/p/sirt"}, "share_url", "https://"),
    ({"slug": "other"}, "slug", "not a field staff can change"),
    ({"colour": "blue"}, "colour", "not a field"),
])
def test_input_that_breaks_a_rule_names_its_field_and_changes_nothing(
        service: Service, sessions: sessionmaker[Session], config: Config,
        changes: dict[str, Any], field: str, words: str) -> None:
    moved = revision(sessions)
    with pytest.raises(petition_versions.Invalid) as refused, sessions.begin() as session:
        petition_versions.edit(session, config, "sirt", changes, EDITOR, NOW)
    assert refused.value.field == field
    assert any(words in message for _, message in refused.value.problems), refused.value
    assert revision(sessions) == moved
    with sessions() as session:
        assert live_petition(session, config, "sirt") == config.petition("sirt")
        assert session.scalar(select(func.count()).select_from(PetitionVersion)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_the_file_and_the_console_are_held_to_the_same_rules(
        service: Service, sessions: sessionmaker[Session], config: Config,
        config_path: Path, tmp_path: Path) -> None:
    curly = "We\u2019re asking NHS England"
    text = config_path.read_text(encoding="utf-8")
    dated = tmp_path / "dated.toml"
    dated.write_text(text.replace('count = 49257 }', 'count = 49257, as_of = 2026-11-27 }'),
                     encoding="utf-8")
    assert load_config(dated).petition("sirt").external[0].as_of == dt.date(2026, 11, 27)
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace('summary = """NHS England', f'summary = """{curly}'),
                      encoding="utf-8")
    with pytest.raises(ConfigError) as in_file:
        load_config(broken)
    with pytest.raises(petition_versions.Invalid) as in_console, sessions.begin() as session:
        petition_versions.edit(session, config, "sirt", {"summary": curly}, EDITOR, NOW)
    (where, message), = in_console.value.problems
    assert f"petitions[0].{where}: {message}" in in_file.value.errors


def test_every_problem_is_reported_at_once(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    with pytest.raises(petition_versions.Invalid) as refused, sessions.begin() as session:
        petition_versions.edit(session, config, "sirt", {"title": "", "goal": -1,
                                                         "summary": "\u201cquoted\u201d"},
                               EDITOR, NOW)
    assert {where for where, _ in refused.value.problems} == {"title", "goal", "summary"}


def test_an_unknown_petition_is_a_key_error(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    with pytest.raises(KeyError), sessions.begin() as session:
        petition_versions.edit(session, config, "nope", {"title": "x"}, EDITOR, NOW)


def test_a_save_made_on_an_older_version_is_stopped(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    edit(sessions, config, {"goal": 120_000})
    with pytest.raises(petition_versions.Stale), sessions.begin() as session:
        petition_versions.edit(session, config, "sirt", {"goal": 130_000}, ADMIN, NOW,
                               based_on=0)
    with sessions() as session:
        assert live_petition(session, config, "sirt").goal == 120_000


# Creating, closing ---------------------------------------------------------------------------

def test_a_petition_created_by_staff_has_its_row_and_counters_and_the_bot_serves_it(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    with sessions.begin() as session:
        petition_versions.create(session, config, SCANS, EDITOR, NOW)
    with sessions() as session:
        assert [p.slug for p in live_petitions(session, config)] == ["sirt", "scans"]
        row = session.scalar(select(Petition).where(Petition.slug == "scans"))
        assert row is not None and row.content_version == 1
        assert session.scalar(select(func.count()).select_from(ChannelCount).where(
            ChannelCount.petition_id == row.id)) == 3
        created = session.scalar(select(AuditEntry).where(
            AuditEntry.action == "petition.create"))
        assert created is not None and created.actor == EDITOR
    assert "Fund faster scans" in says(service, "SIGN SCANS")
    service.sync_petitions()  # still fine at the next start


@pytest.mark.parametrize(("fields", "field"), [
    ({**SCANS, "slug": "sirt"}, "slug"),
    ({**SCANS, "code": "SIRT"}, "code"),
    ({**SCANS, "slug": "Fund Scans!"}, "slug"),
    ({key: value for key, value in SCANS.items() if key != "created"}, "created"),
])
def test_a_new_petition_must_not_clash_nor_break_a_rule(
        service: Service, sessions: sessionmaker[Session], config: Config,
        fields: dict[str, Any], field: str) -> None:
    with pytest.raises(petition_versions.Invalid) as refused, sessions.begin() as session:
        petition_versions.create(session, config, fields, EDITOR, NOW)
    assert field in {where for where, _ in refused.value.problems}
    with sessions() as session:
        assert [p.slug for p in live_petitions(session, config)] == ["sirt"]


def test_closing_and_reopening_are_saved_and_audited_by_name(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    with sessions.begin() as session:
        closed = petition_versions.close(session, config, "sirt", EDITOR, NOW)
        assert petition_versions.close(session, config, "sirt", EDITOR, NOW) == closed
    assert closed.closed == dt.date(2026, 12, 5)
    with sessions.begin() as session:
        assert petition_versions.reopen(session, config, "sirt", EDITOR, NOW).closed is None
    with sessions() as session:
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["petition.close", "petition.reopen"]


def test_retention_follows_a_petition_closed_in_the_console(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    later = NOW + dt.timedelta(days=366)
    with sessions() as session:
        assert expired_petitions(session, config, later) == []
    edit(sessions, config, {"closed": "2026-01-10"})
    with sessions() as session:
        assert expired_petitions(session, config, later) == ["sirt"]


# Everything that shows the content ---------------------------------------------------------

def test_the_public_json_and_the_dashboard_follow_the_change_org_count(
        app: Flask, config: Config) -> None:
    rt = app.extensions["petitionbot"]
    client = app.test_client()
    assert client.get("/api/petitions/sirt").get_json()["counts"]["total"] == 49_257
    edit(rt.sessions, config, {"external": [{"source": "Change.org", "count": 52_400}]},
         actor=ADMIN)
    counts = client.get("/api/petitions/sirt").get_json()["counts"]
    assert counts["total"] == 52_400
    assert counts["external"] == [{"source": "Change.org", "count": 52_400}]
    with rt.sessions() as session:
        figures = totals(session, rt.service.content(session).petition("sirt"))
    assert figures.external == (("Change.org", 52_400),) and figures.total == 52_400


def test_the_simulator_greets_with_the_summary_an_editor_just_changed(
        service: Service, sessions: sessionmaker[Session], config: Config,
        tmp_path: Path) -> None:
    sandbox = Sandbox(config, f"sqlite:///{tmp_path / 'simulator.db'}", service)
    assert config.petition("sirt").summary in _greeting(sandbox, 1)
    edit(sessions, config, {"summary": NEW_SUMMARY})
    assert NEW_SUMMARY in _greeting(sandbox, 2)
    with sessions.begin() as session:
        petition_versions.create(session, config, SCANS, EDITOR, NOW)
    reply = sandbox.send(3, Channel.SMS, "SIGN SCANS").replies
    assert "Fund faster scans" in reply[0].text
    sandbox.service.engine.dispose()


def _greeting(sandbox: Sandbox, staff_id: int) -> str:
    return sandbox.send(staff_id, Channel.SMS, "Hi").replies[0].text


def test_a_live_content_reads_the_petitions_again_only_when_the_revision_moves(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    live = LiveContent(config)
    with sessions() as session:
        first = live.current(session)
        assert live.current(session) is first
    edit(sessions, config, {"title": "Fund SIRT for NET patients now"})
    with sessions() as session:
        assert live.current(session).petition("sirt").title == "Fund SIRT for NET patients now"


# Start-up ---------------------------------------------------------------------------------

def test_start_up_names_what_in_config_toml_the_database_overrides(
        settings: Settings, service: Service, sessions: sessionmaker[Session],
        config: Config, caplog: pytest.LogCaptureFixture) -> None:
    with sessions() as session:
        assert overridden(session, config) == []
    edit(sessions, config, {"summary": NEW_SUMMARY})
    edit(sessions, config, {"goal": 150_000}, actor=ADMIN)
    with sessions.begin() as session:
        petition_versions.create(session, config, SCANS, EDITOR, NOW)
    with sessions() as session:
        lines = overridden(session, config)
    assert lines == [
        f"petitions[sirt].summary: changed in the console by {EDITOR} on 2026-12-05; the "
        "file's value is not used",
        f"petitions[sirt].goal: changed in the console by {ADMIN} on 2026-12-05; the "
        "file's value is not used",
        f"petitions[scans]: created in the console by {EDITOR} on 2026-12-05; it is not in "
        "the file",
    ]
    with caplog.at_level(logging.INFO, logger="petitionbot"):
        started = serving(settings)
        next(started)
    next(started, None)  # the app disposes its engine
    told = [r.getMessage() for r in caplog.records if r.name == "petitionbot"]
    for line in lines:
        assert any(line in message for message in told), told


def test_two_editors_creating_one_slug_at_once_make_one_petition(
        service: Service, sessions: sessionmaker[Session], config: Config) -> None:
    """Both press "Create" at the same moment: one petition is made, the other editor is
    told the slug is taken (never a database error), on both databases."""

    def create() -> str:
        try:
            with sessions.begin() as session:
                petition_versions.create(session, config, SCANS, EDITOR, NOW)
            return "created"
        except petition_versions.Invalid as refused:
            return " ".join(f"{field}: {problem}" for field, problem in refused.problems)

    results = together([create, create])
    assert sorted(results)[0] == "created" and "already used" in sorted(results)[1], results
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Petition)
                              .where(Petition.slug == "scans")) == 1
