"""Imports (issue #16 point 4): a suppression list, and signatures collected on paper, from
CSV files, through the one code path the command line, the console and the API share
(bot/shell/imports.py).

The suppression list is checked where every message leaves, the worker, so what was queued
before the import is stopped too: the real worker sends through the real Twilio and
Telegram clients to loopback fakes (the fixtures of test_broadcasts), and the fakes are
asked what arrived. Paper signatures count, are handed in and fed to a CRM with their
source, and are never messaged. A file with one bad row keeps nothing; a dry run changes
nothing; a file is imported once.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
import zoneinfo
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.entry.cli import main as cli
from bot.infra.config import Config
from bot.shell import broadcast, imports, inbox
from bot.shell.export import write_signatures
from bot.shell.service import Service
from models import (
    Announcement,
    Base,
    ChannelCount,
    ConsentRecord,
    Delivery,
    Event,
    Identity,
    ImportBatch,
    Petition,
    Signature,
    StaffUser,
    Subscription,
    Supporter,
    Suppression,
)
from models.tables import event_receivers
from tests.conftest import CONFIG
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.twilio_api import FakeTwilio
from tests.integration import test_broadcasts
from tests.integration.api_helpers import issue_tokens
from tests.integration.console_helpers import add_people, signer
from tests.integration.test_api_signatures import (
    Follower,
    current,
    every_page,
    signs,
)
from tests.integration.test_broadcasts import Cast, Clock, announce, drive, rows
from tests.integration.writer_lock import writer_held

# The worker's fixtures (the real senders, to loopback fakes of Twilio and Telegram) are
# test_broadcasts', shared rather than copied: pytest finds fixtures among a module's names.
for _fixture in ("brisk_worker", "cfg", "clock", "fake_telegram", "fake_twilio", "gateway",
                 "people", "senders", "twilio_settings"):
    globals()[_fixture] = getattr(test_broadcasts, _fixture)

AMIRA = "+447700900123"   # SMS
BEN = "+447700900456"     # WhatsApp
CHLOE = "5550001"         # Telegram, who shared her number
CHLOE_PHONE = "+447700900777"
HARI = "5550003"          # Telegram
IVY = "+447700900987"     # SMS
NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()


def csv_of(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def day(days_ago: int, uk: bool = False) -> str:
    when = TODAY - dt.timedelta(days=days_ago)
    return f"{when:%d/%m/%Y}" if uk else when.isoformat()


def run(sessions: sessionmaker[Session], config: Config, kind: str, data: bytes,
        **options: Any) -> imports.Summary:
    options.setdefault("filename", f"{kind}.csv")
    options.setdefault("actor", "cli:test")
    options.setdefault("now", NOW)
    if kind == imports.SIGNATURES:
        options.setdefault("petition", "sirt")
    return imports.run(sessions, config, kind, data, **options)


def lines(summary: imports.Summary) -> list[int]:
    return [p.line for p in summary.errors]


def snapshot(engine: Engine, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but `skip`), in key order."""
    with engine.connect() as connection:
        return {table.name: [tuple(row) for row in connection.execute(
            select(table).order_by(*(list(table.primary_key.columns) or table.columns)))]
            for table in Base.metadata.sorted_tables if table.name not in skip}


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


# The suppression list -----------------------------------------------------------------

def test_a_suppressed_number_is_never_messaged_again_on_sms_whatsapp_or_telegram(
        cfg: Config, people: Cast, sessions: sessionmaker[Session], senders: dict[str, Any],
        clock: Clock, fake_twilio: FakeTwilio, fake_telegram: FakeTelegram) -> None:
    """Amira (SMS), Ben (WhatsApp) and Chloe (Telegram, who shared her number) are on the
    Fundraising Preference Service's list; Hari and Ivy are not. What was queued for them
    before the import is skipped as "suppressed", later announcements leave them out, and
    nothing about their consent or updates changes."""
    people.signs("amira", "sms", AMIRA, "Amira Khan", "SW1A 1AA")
    people.signs("ben", "whatsapp", BEN, "Ben Ross", "EH1 1YZ")
    people.signs("chloe", "telegram", CHLOE, "Chloe Evans", "CF10 1EP")
    people.signs("hari", "telegram", HARI, "Hari Patel", "EH3 9AA")
    people.signs("ivy", "sms", IVY, "Ivy Cole", "LS1 1UR")
    ids = people.ids
    with sessions.begin() as session:  # as when she shares her contact in Telegram
        chloe = session.get(Identity, ids["chloe"])
        assert chloe is not None
        session.execute(update(Supporter).where(Supporter.id == chloe.supporter_id)
                        .values(phone=CHLOE_PHONE))
        session.add(Delivery(announcement_id=None, identity_id=ids["amira"], channel="sms",
                             status="pending", attempts=0, used_template=False,
                             created_at=clock(), text="A staff reply, queued before"))
    before = announce(sessions, cfg, "News from before the list came in.", clock())
    kept = facts(sessions)

    summary = run(sessions, cfg, imports.SUPPRESSIONS, csv_of(
        "Mobile Number,Notes", "07700 900123,", "+44 7700 900456,", "0044 7700 900777,x",
        "07700900123,again", "+447700900001,a stranger"), source="FPS", now=clock())
    assert (summary.new, summary.already, summary.matched, summary.bad_rows) == (4, 1, 3, 0)
    after = announce(sessions, cfg, "News from after.", clock())
    drive(cfg, sessions, senders, clock)

    first = rows(sessions, before)
    assert {n: (first[ids[n]].status, first[ids[n]].error_code) for n in ids} == {
        "amira": ("skipped", "suppressed"), "ben": ("skipped", "suppressed"),
        "chloe": ("skipped", "suppressed"), "hari": ("sent", None), "ivy": ("sent", None)}
    assert set(rows(sessions, after)) == {ids["hari"], ids["ivy"]}  # left out of the audience
    with sessions() as session:
        direct = session.scalar(select(Delivery).where(Delivery.announcement_id.is_(None)))
        assert direct is not None and (direct.status, direct.error_code) == (
            "skipped", "suppressed")
        later = session.get(Announcement, after)
        assert later is not None
        preview = broadcast.preview(session, cfg, later, clock())
    assert sum(preview.recipients.values()) == 2
    assert not fake_twilio.requests_to(AMIRA) and not fake_twilio.requests_to("whatsapp:" + BEN)
    assert not fake_telegram.messages_to(int(CHLOE))
    assert fake_twilio.sent_to(IVY) and fake_telegram.messages_to(int(HARI))
    assert facts(sessions) == kept  # consent, updates, STOP and opt-in times as they were
    # Writing in is answered: a reply is not a message sent unprompted.
    assert any("Amira Khan" in text for text in people.says("sms", AMIRA, "STATUS"))


def facts(sessions: sessionmaker[Session]) -> list[Any]:
    """Everything an import must leave alone about the people already there."""
    with sessions() as session:
        return [
            session.execute(select(ConsentRecord.id, ConsentRecord.supporter_id,
                                   ConsentRecord.purpose, ConsentRecord.action,
                                   ConsentRecord.created_at).order_by(ConsentRecord.id)).all(),
            session.execute(select(Subscription.identity_id, Subscription.petition_id,
                                   Subscription.created_at).order_by(Subscription.id)).all(),
            session.execute(select(Identity.id, Identity.supporter_id, Identity.opted_out_at,
                                   Identity.unreachable_at).order_by(Identity.id)).all(),
            session.execute(select(Supporter.id, Supporter.phone).order_by(Supporter.id)).all()]


def test_a_staff_reply_to_a_suppressed_person_is_refused_with_the_reason(
        client: FlaskClient, sessions: sessionmaker[Session], config: Config) -> None:
    from tests.integration.inbox_helpers import waiting

    conversation = waiting(sessions, AMIRA, "Can my mum sign too?")
    run(sessions, config, imports.SUPPRESSIONS, csv_of("phone", AMIRA))
    staff = add_people(sessions)
    with sessions.begin() as session:
        editor = session.get(StaffUser, staff["editor"])
        assert editor is not None
        with pytest.raises(inbox.CannotReply, match="suppression list"):
            inbox.reply(session, conversation, editor, "Yes, she can.", NOW)


def test_bad_numbers_are_reported_by_line_and_nothing_is_kept(
        config: Config, sessions: sessionmaker[Session], engine: Engine) -> None:
    before = snapshot(engine)
    summary = run(sessions, config, imports.SUPPRESSIONS, csv_of(
        "phone", "07700900123", "not a number", "", "  ", "+44", "07700 900456"))
    assert summary.bad_rows == 2 and not summary.kept
    assert [(p.line, p.error.split(":")[0]) for p in summary.errors] == [
        (3, "phone"), (6, "phone")]
    assert not changed(before, snapshot(engine))


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(
        config: Config, sessions: sessionmaker[Session], engine: Engine,
        client: FlaskClient) -> None:
    signer(client, AMIRA, "Amira Khan", "SW1A 1AA")
    numbers = csv_of("phone", AMIRA, BEN)
    paper = csv_of("name,postcode,date,source", f"Rosa Parks,LS1 1UR,{day(3)},Leeds march")
    before = snapshot(engine)
    dry = run(sessions, config, imports.SUPPRESSIONS, numbers, dry_run=True)
    dry_paper = run(sessions, config, imports.SIGNATURES, paper, dry_run=True)
    assert not changed(before, snapshot(engine))
    assert (dry.new, dry.matched, dry.kept) == (2, 1, False)
    assert (dry_paper.new, dry_paper.first_number, dry_paper.kept) == (1, None, False)
    real = run(sessions, config, imports.SUPPRESSIONS, numbers)
    assert (real.new, real.matched, real.kept) == (2, 1, True)


def test_the_same_file_twice_is_refused_and_a_number_listed_twice_is_kept_once(
        config: Config, sessions: sessionmaker[Session]) -> None:
    first = run(sessions, config, imports.SUPPRESSIONS, csv_of("phone", AMIRA, BEN))
    with pytest.raises(imports.Refused, match="imported before") as refused:
        run(sessions, config, imports.SUPPRESSIONS, csv_of("phone", AMIRA, BEN),
            filename="renamed.csv")
    assert refused.value.status == 409
    again = run(sessions, config, imports.SUPPRESSIONS, csv_of("Phone", BEN, IVY))
    assert (again.new, again.already) == (1, 1)
    with sessions() as session:
        kept = dict(session.execute(select(Suppression.phone, Suppression.import_id)).all())
        batches = session.scalar(select(func.count()).select_from(ImportBatch))
    assert kept == {AMIRA: first.id, BEN: first.id, IVY: again.id} and batches == 2


@pytest.mark.parametrize(("data", "says"), [
    ("phone\n07700900123\n".encode("utf-16"), "not UTF-8"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"name,number\x00\n", "NUL"),
    (b"", "empty"),
    (b"phone\n", "no rows"),
    (b"name,email\nAmira,a@example.org\n", "no phone column"),
    (b"phone,mobile\n1,2\n", "columns that could be \"phone\""),
])
def test_a_file_that_is_no_csv_with_the_columns_is_refused_whole(
        data: bytes, says: str, config: Config, sessions: sessionmaker[Session]) -> None:
    with pytest.raises(imports.Refused, match=says) as refused:
        run(sessions, config, imports.SUPPRESSIONS, data)
    assert refused.value.status == 400


# Paper signatures ---------------------------------------------------------------------

PAPER = ("Name,Postcode,Date signed,Source",
         f"Rosa Parks,LS1 1UR,{day(3)},Leeds march",
         f"Tom O'Neill,ls11ur,{day(3, uk=True)},Leeds march",
         f"amira khan,EH1 1AA,{day(2)},Edinburgh stall")


def test_paper_signatures_count_are_handed_in_and_fed_with_their_source_and_never_messaged(
        app: Flask, client: FlaskClient, config: Config, sessions: sessionmaker[Session]) -> None:
    signer(client, AMIRA, "Amira Khan", "EH1 1AA", updates="YES")
    with sessions.begin() as session:  # a CRM that wants to hear of every signature
        session.execute(insert(event_receivers).values(
            url="https://crm.example.org/hook", secret="whsec_test",
            events=["signature.created"], created_by="admin@planets.example",
            created_at=NOW))
    summary = run(sessions, config, imports.SIGNATURES, csv_of(*PAPER))
    assert (summary.new, summary.matched, summary.bad_rows) == (3, 1, 0)
    assert (summary.first_number, summary.last_number) == (2, 4)
    assert summary.sources == {"Leeds march": 2, "Edinburgh stall": 1}

    counts = client.get("/api/petitions/sirt").get_json()["counts"]
    assert counts["here"] == 4
    assert counts["by_channel"] == {"sms": 1, "whatsapp": 0, "telegram": 0, "paper": 3}
    with sessions() as session:
        paper = session.execute(select(Signature.number, Signature.name, Signature.postcode,
                                       Signature.nation, Signature.source,
                                       Signature.signed_at, Signature.supporter_id,
                                       Signature.consent_id)
                                .where(Signature.channel == "paper")
                                .order_by(Signature.number)).all()
        assert session.scalar(select(Petition.signature_count)) == 4
        assert session.scalar(select(ChannelCount.count).where(
            ChannelCount.channel == "paper")) == 3
        people_ids = [row.supporter_id for row in paper]
        assert session.scalar(select(func.count()).select_from(Identity).where(
            Identity.supporter_id.in_(people_ids))) == 0  # no channel to be reached on
        assert session.scalar(select(func.count()).select_from(ConsentRecord).where(
            ConsentRecord.supporter_id.in_(people_ids))) == 0
        assert all(s.phone is None for s in session.scalars(
            select(Supporter).where(Supporter.id.in_(people_ids))))
        events = session.scalars(select(Event.data).where(Event.type == "signature.created")
                                 .order_by(Event.id)).all()
    assert [(r.number, r.name, r.postcode, r.nation, r.source) for r in paper] == [
        (2, "Rosa Parks", "LS1 1UR", "england", "Leeds march"),
        (3, "Tom O'Neill", "LS1 1UR", "england", "Leeds march"),
        (4, "amira khan", "EH1 1AA", "scotland", "Edinburgh stall")]
    assert paper[0].signed_at.date() == TODAY - dt.timedelta(days=3)
    assert all(r.consent_id is None for r in paper)
    assert [(e["number"], e["channel"], e["source"]) for e in events[-3:]] == [
        (2, "paper", "Leeds march"), (3, "paper", "Leeds march"), (4, "paper", "Edinburgh stall")]

    out = io.StringIO()
    with sessions() as session:
        write_signatures(session, "sirt", "csv", out)
    exported = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["channel"], r["source"]) for r in exported] == [
        ("sms", ""), ("paper", "Leeds march"), ("paper", "Leeds march"),
        ("paper", "Edinburgh stall")]
    tokens = issue_tokens(sessions, add_people(sessions))
    feed = [i for p in every_page(client, tokens["admin"], limit=2) for i in p["items"]]
    assert [(i["number"], i["channel"], i["source"]) for i in feed] == [
        (1, "sms", None), (2, "paper", "Leeds march"), (3, "paper", "Leeds march"),
        (4, "paper", "Edinburgh stall")]
    with sessions.begin() as session:  # an announcement to everyone reaches Amira alone
        made = broadcast.create(session, config, "sirt", "Thank you all!", "editor@planets")
        assert broadcast.approve(session, config, made, "admin@planets", NOW) == 1


def test_the_hand_in_and_the_dashboard_show_paper_by_source(
        app: Flask, client: FlaskClient, config: Config, sessions: sessionmaker[Session]) -> None:
    from tests.integration.console_helpers import Browser

    add_people(sessions)
    signer(client, AMIRA, "Amira Khan", "EH1 1AA")
    run(sessions, config, imports.SIGNATURES, csv_of(*PAPER))
    admin = Browser(app.test_client())
    admin.login("admin@planets.example")
    handin = admin.get("/staff/handin").get_data(as_text=True)
    assert "Signed on paper: Leeds march</th><td class=\"num\">2<" in handin
    assert "Signed here (SMS, WhatsApp, Telegram)</th><td class=\"num\">1<" in handin
    summary = list(csv.reader(io.StringIO(admin.get("/staff/handin/summary.csv").get_data(
        as_text=True))))
    assert ["signatures_here", "1"] in summary
    assert ["signatures_on_paper_Leeds march", "2"] in summary
    dashboard = admin.get("/staff/").get_data(as_text=True)
    assert "<dt>Paper</dt><dd>3</dd>" in dashboard
    assert "<dt>Edinburgh stall</dt><dd>1</dd>" in dashboard
    assert "3 on paper + 1 here" in dashboard


def test_bad_paper_rows_are_reported_by_their_line_and_nothing_is_kept(
        config: Config, sessions: sessionmaker[Session], engine: Engine) -> None:
    data = csv_of(
        "name,postcode,date,source",                          # 1
        f"Rosa Parks,LS1 1UR,{day(3)},Leeds march",           # 2
        f"=cmd,LS1 1UR,{day(3)},Leeds march",                 # 3: a formula, not a name
        f'"Ann\nLee",LS1 1UR,{day(3)},Leeds march',           # 4-5: one row, two lines
        f"Bob Smith,XX1,{day(3)},Leeds march",                # 6
        "Bob Smith,LS1 1UR,2099-01-01,Leeds march",           # 7: in the future
        f"rosa parks,LS11UR,{day(3, uk=True)},LEEDS MARCH",   # 8: line 2 again
        "Bob Smith,LS1 1UR,31/02/2026,Leeds march",           # 9: no such day
        "",                                                   # 10: blank, ignored
        "Carl Jones,LS1 1UR,2020-01-01,Leeds march",          # 11: before the petition
        f"Dee Khan,LS1 1UR,{day(1)},",                        # 12: no source
        f"Eve Ash,,{day(1)},Leeds march")                     # 13: no postcode
    before = snapshot(engine)
    summary = run(sessions, config, imports.SIGNATURES, data)
    assert lines(summary) == [3, 6, 7, 8, 9, 11, 12, 13]
    errors = {p.line: p.error for p in summary.errors}
    assert errors[3].startswith("name:") and errors[6] == "postcode: not a UK postcode"
    assert errors[7] == "date: in the future" and "same signature as line 2" in errors[8]
    assert errors[9].startswith("date: not a date") and "before the petition" in errors[11]
    assert errors[12].startswith("source: empty") and errors[13].startswith("postcode: empty")
    assert (summary.rows, summary.new, summary.bad_rows, summary.kept) == (10, 2, 8, False)
    assert not changed(before, snapshot(engine))


def test_a_paper_signature_imported_before_is_a_bad_row_in_another_file(
        config: Config, sessions: sessionmaker[Session]) -> None:
    run(sessions, config, imports.SIGNATURES, csv_of(*PAPER))
    with pytest.raises(imports.Refused, match="imported before"):
        run(sessions, config, imports.SIGNATURES, csv_of(*PAPER))
    again = run(sessions, config, imports.SIGNATURES, csv_of(
        *PAPER[:2], f"Zoe Hill,LS1 1UR,{day(1)},Leeds march"))
    assert lines(again) == [2] and "paper signature number 1" in again.errors[0].error
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 3


def test_signatures_for_an_unknown_petition_are_refused(
        config: Config, sessions: sessionmaker[Session]) -> None:
    with pytest.raises(imports.Refused) as refused:
        run(sessions, config, imports.SIGNATURES, csv_of(*PAPER), petition="nope")
    assert refused.value.status == 404


def test_thousands_of_rows_are_imported_in_batches(
        config: Config, sessions: sessionmaker[Session], service: Service,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A few thousand of each, a thousand a statement; `make bench`-sized files are
    measured by hand (README)."""
    monkeypatch.setattr(imports, "SUPPRESSIONS_CHUNK", 1000)
    monkeypatch.setattr(imports, "PAPER_CHUNK", 1000)
    numbers = csv_of("phone", *(f"+4477009{n:05d}" for n in range(3000)))
    assert run(sessions, config, imports.SUPPRESSIONS, numbers).new == 3000
    names = [f"{a} {b}" for a in ("Ann", "Bob", "Cat", "Dan", "Eve", "Fay") for b in (
        "Hill", "Ross", "Shaw", "Lee", "Moss")]
    paper = csv_of("name,postcode,date,source", *(
        f"{names[n % 30]},LS{1 + n // 30 % 27} {1 + n % 9}AB,{day(n % 20)},Stall {n // 810}"
        for n in range(3000)))
    summary = run(sessions, config, imports.SIGNATURES, paper)
    assert (summary.new, summary.first_number, summary.last_number) == (3000, 1, 3000)
    with sessions() as session:
        assert session.scalar(select(Petition.signature_count)) == 3000
        assert session.scalar(select(func.count(func.distinct(Signature.supporter_id)))) == 3000
        drafts = session.scalars(select(Announcement.milestone)).all()
    assert 50_000 in drafts  # 49,257 on Change.org + 3,000: the milestone's draft is made
    with sessions() as session:
        made = session.execute(select(Signature.number, Signature.name, Signature.signed_at)
                               .order_by(Signature.number)).all()
    assert [(n, name) for n, name, _ in made[::1000]] == [
        (1, names[0]), (1001, names[1000 % 30]), (2001, names[2000 % 30])]
    zone = zoneinfo.ZoneInfo(config.broadcast.timezone)
    assert made[-1].signed_at == imports.signed_at(TODAY - dt.timedelta(days=2999 % 20),
                                                   zone, NOW)


def test_a_paper_file_too_large_to_number_at_once_is_refused_whole(
        config: Config, sessions: sessionmaker[Session], engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_PAPER_ROWS", 2)
    before = snapshot(engine)
    with pytest.raises(imports.Refused, match="at most 2 paper signatures") as refused:
        run(sessions, config, imports.SIGNATURES, csv_of(*PAPER))
    assert refused.value.status == 413
    assert not changed(before, snapshot(engine))


# Checking takes no write lock ---------------------------------------------------------

def test_a_dry_run_takes_no_write_lock(
        config: Config, sessions: sessionmaker[Session], engine: Engine,
        client: FlaskClient) -> None:
    """Checking a million numbers takes a while: meanwhile messages must go on being
    written. Here a writer holds the database for the whole dry run, which still answers."""
    signer(client, AMIRA, "Amira Khan", "EH1 1AA")
    with writer_held(engine):
        numbers = run(sessions, config, imports.SUPPRESSIONS, csv_of("phone", AMIRA, BEN),
                      dry_run=True)
        paper = run(sessions, config, imports.SIGNATURES, csv_of(*PAPER), dry_run=True)
    assert (numbers.new, numbers.matched, numbers.kept) == (2, 1, False)
    assert (paper.new, paper.matched, paper.kept) == (3, 1, False)


@pytest.mark.parametrize("kind", [imports.SUPPRESSIONS, imports.SIGNATURES])
def test_an_import_checks_its_rows_before_it_takes_the_write_lock(
        config: Config, sessions: sessionmaker[Session], engine: Engine,
        monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The write transaction holds the inserts alone: a writer holds the database while
    the rows are checked, and the import goes on once it lets go."""
    for plan in ("_plan_suppressions", "_plan_signatures"):
        checked = getattr(imports, plan)

        def held(*args: Any, checked: Any = checked, **kwargs: Any) -> Any:
            with writer_held(engine):
                return checked(*args, **kwargs)

        monkeypatch.setattr(imports, plan, held)
    data = csv_of("phone", AMIRA, BEN) if kind == imports.SUPPRESSIONS else csv_of(*PAPER)
    summary = run(sessions, config, kind, data)
    assert summary.kept and summary.new == (2 if kind == imports.SUPPRESSIONS else 3)


def meanwhile(monkeypatch: pytest.MonkeyPatch, plan: str, then: Any) -> None:
    """Run `then` once the rows are checked, before the import writes: another import
    finishing in the meantime."""
    checked = getattr(imports, plan)

    def and_then(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(imports, plan, checked)
        planned = checked(*args, **kwargs)
        then()
        return planned

    monkeypatch.setattr(imports, plan, and_then)


def test_the_same_file_imported_meanwhile_is_refused(
        config: Config, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    data = csv_of("phone", AMIRA, BEN)
    meanwhile(monkeypatch, "_plan_suppressions",
              lambda: run(sessions, config, imports.SUPPRESSIONS, data))
    with pytest.raises(imports.Refused, match="imported before") as refused:
        run(sessions, config, imports.SUPPRESSIONS, data, filename="again.csv")
    assert refused.value.status == 409
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ImportBatch)) == 1


def test_numbers_listed_meanwhile_are_counted_as_already_there(
        config: Config, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    meanwhile(monkeypatch, "_plan_suppressions",
              lambda: run(sessions, config, imports.SUPPRESSIONS, csv_of("phone", BEN)))
    summary = run(sessions, config, imports.SUPPRESSIONS, csv_of("phone", AMIRA, BEN, IVY))
    assert (summary.new, summary.already) == (2, 1)
    with sessions() as session:
        first = session.scalar(select(func.min(ImportBatch.id)))
        kept = dict(session.execute(select(Suppression.phone, Suppression.import_id)).all())
        recorded = session.scalar(select(ImportBatch.summary).where(
            ImportBatch.id == summary.id))
    assert kept == {BEN: first, AMIRA: summary.id, IVY: summary.id}
    assert recorded is not None and (recorded["new"], recorded["already"]) == (2, 1)


def test_paper_signatures_imported_meanwhile_are_checked_again(
        config: Config, sessions: sessionmaker[Session], engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another file holding one of these rows was imported while they were checked: the
    row is bad after all, and nothing of this file is kept."""
    meanwhile(monkeypatch, "_plan_signatures",
              lambda: run(sessions, config, imports.SIGNATURES, csv_of(PAPER[0], PAPER[2])))
    summary = run(sessions, config, imports.SIGNATURES, csv_of(*PAPER))
    assert not summary.kept and lines(summary) == [3]
    assert "already imported" in summary.errors[0].error
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1


def test_signing_by_sms_while_a_paper_import_runs_keeps_numbers_unique_and_the_feed_whole(
        app: Flask, config: Config, service: Service, sessions: sessionmaker[Session]) -> None:
    """Signers take their numbers under the petition row's lock while an import takes 400
    at once under the same lock; a CRM follows the feed meanwhile. Every number is given
    once, and the feed serves each signature once, in order (on PostgreSQL they truly run
    at the same moments; on SQLite they take turns)."""
    tokens = issue_tokens(sessions, add_people(sessions))
    done = threading.Event()
    follower = Follower(app.test_client(), tokens["admin"], done)
    paper = csv_of("name,postcode,date,source", *(
        f"Paper Person{'s' * (n // 26)}{chr(97 + n % 26)},LS1 1UR,{day(1)},Stall"
        for n in range(400)))
    results: list[Any] = []

    def sms(thread: int) -> None:
        assert follower.reading.wait(timeout=60)
        for person in range(6):
            signs(service, f"+4477009{thread:02d}{person:03d}",
                  f"{('Imran', 'Jess', 'Kieran', 'Lucy', 'Owen', 'Priya')[person]} "
                  f"{('Taylor', 'Brown', 'Wilson')[thread]}", "SW1A 1AA")

    def importer() -> None:
        assert follower.reading.wait(timeout=60)
        results.append(run(sessions, config, imports.SIGNATURES, paper))

    threads = [threading.Thread(target=follower.follow), threading.Thread(target=importer),
               *(threading.Thread(target=sms, args=(n,)) for n in range(3))]
    for thread in threads[1:]:
        thread.start()
    threads[0].start()
    for thread in threads[1:]:
        thread.join(timeout=300)
    done.set()
    threads[0].join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert results and results[0].new == 400
    numbers = current(sessions)
    assert sorted(numbers) == list(range(1, 400 + 18 + 1))  # each number once, none lost
    assert not follower.problems
    assert follower.seen == sorted(numbers), "the feed skipped, repeated or reordered one"
    final = [i["number"] for p in every_page(app.test_client(), tokens["admin"], limit=97)
             for i in p["items"]]
    assert final == sorted(numbers)


# The command line ---------------------------------------------------------------------

@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "PETITIONBOT_CONFIG": str(CONFIG),
            "USER": "lead", "TWILIO_ACCOUNT_SID": "", "TELEGRAM_BOT_TOKEN": "",
            "REDIS_URL": ""}


def test_the_command_line_checks_imports_and_reports_bad_rows(
        tmp_path: Any, cli_env: dict[str, str], sessions: sessionmaker[Session],
        service: Service) -> None:
    numbers = tmp_path / "fps.csv"
    numbers.write_bytes(csv_of("Phone", AMIRA, BEN))
    runner = CliRunner()
    dry = runner.invoke(cli, ["import", "suppressions", str(numbers), "--dry-run"],
                        env=cli_env)
    assert dry.exit_code == 0, dry.output
    assert "numbers it would add to the suppression list: 2" in dry.output
    done = runner.invoke(cli, ["import", "suppressions", str(numbers), "--source", "FPS"],
                         env=cli_env)
    assert done.exit_code == 0 and "kept as import 1" in done.output, done.output
    twice = runner.invoke(cli, ["import", "suppressions", str(numbers)], env=cli_env)
    assert twice.exit_code == 1 and "imported before" in twice.output
    paper = tmp_path / "march.csv"
    paper.write_bytes(csv_of(*PAPER, "Bob Smith,XX1,2026-01-01,Leeds march"))
    bad = runner.invoke(cli, ["import", "signatures", str(paper), "--petition", "sirt"],
                        env=cli_env)
    assert bad.exit_code == 1 and "line 5: postcode: not a UK postcode" in bad.output
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 0
        batch = session.scalar(select(ImportBatch))
        sources = set(session.scalars(select(Suppression.source)))
    assert batch is not None and batch.actor == "cli:lead" and sources == {"FPS"}
