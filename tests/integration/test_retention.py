"""Retention ([retention] in config.toml) with a controlled clock, on SQLite and PostgreSQL.

What must go is looked for in every string column of every table (Base.metadata), by the
person's phone number, chat id and name; what must stay (the suppression list, the
idempotency keys, every count) is checked to have stayed; --dry-run changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Engine, String, Text, cast, func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel
from bot.infra.config import Config, load_config
from bot.shell import retention
from bot.shell.service import Handled, Received, Service
from models import (
    AuditEntry,
    Base,
    ChannelCount,
    Conversation,
    Identity,
    InboundMessage,
    Petition,
    Signature,
    Subscription,
    Supporter,
)
from tests.conftest import CONFIG, ROOT

T0 = dt.datetime(2025, 1, 10, 12, 0, tzinfo=dt.UTC)
CLOSED = dt.date(2025, 2, 1)        # the SIRT petition closes; anonymised from 2025-08-01
AMIRA, BEN, CARA, ELI = "+447700900101", "+447700900102", "+447700900103", "+447700900105"
DEV = "987650123"                  # a Telegram chat id
_ids = itertools.count(1)


# The world -----------------------------------------------------------------------------------

@pytest.fixture
def two_petitions(config: Config) -> Config:
    """SIRT (closing on CLOSED) and a second petition that stays open."""
    sirt = dataclasses.replace(config.petition("sirt"), closed=CLOSED)
    other = dataclasses.replace(sirt, slug="other", code="OTHER", title="Another petition",
                                closed=None, milestones=(), external=())
    return dataclasses.replace(config, petitions=(sirt, other))


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def bot(two_petitions: Config, sessions: sessionmaker[Session], clock: Clock) -> Service:
    service = Service(two_petitions, sessions, clock=clock)
    service.sync_petitions()
    return service


def says(bot: Service, channel: Channel, address: str, *texts: str) -> list[Handled]:
    phone = address if channel != Channel.TELEGRAM else ""
    handled = []
    for body in texts:
        sid = f"SM{next(_ids):032x}" if channel != Channel.TELEGRAM else str(next(_ids))
        handled.append(bot.receive(Received(channel, address, body, sid, phone=phone)))
    return handled


def sign(bot: Service, channel: Channel, address: str, name: str, postcode: str,
         updates: str = "YES") -> None:
    said = says(bot, channel, address, "Hi", "SIGN", "YES", name, postcode, "YES", updates)
    assert said[5].signed, [h.step for h in said]


def meet_everyone(bot: Service) -> None:
    sign(bot, Channel.SMS, AMIRA, "Amira Okafor", "SW1A 1AA")                  # subscribed
    sign(bot, Channel.SMS, BEN, "Benedict Fairweather", "EH1 1YZ", updates="NO")
    says(bot, Channel.SMS, BEN, "STOP")                                     # suppression
    says(bot, Channel.WHATSAPP, CARA, "Hi", "SIGN", "YES", "Cara Lindqvist", "CF10 1AA")
    says(bot, Channel.TELEGRAM, DEV, "/start", "MORE")                      # never signed
    sign(bot, Channel.SMS, ELI, "Elias Thornbury", "BT1 1AA")
    says(bot, Channel.SMS, ELI, "SIGN OTHER")                                # live elsewhere
    again = says(bot, Channel.SMS, ELI, "SIGN", "YES", "Elias Thornbury", "BT1 1AA", "YES", "YES")
    assert again[4].signed


# Looking everywhere ----------------------------------------------------------------------

def found_in(engine: Engine, needle: str) -> list[str]:
    """Every table.column (string, text or JSON) holding `needle`, with the row count."""
    hits = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, JSON):
                    value: Any = cast(column, Text)
                elif isinstance(column.type, String | Text):
                    value = column
                else:
                    continue
                count = connection.scalar(select(func.count()).select_from(table)
                                          .where(value.contains(needle)))
                if count:
                    hits.append(f"{table.name}.{column.name}={count}")
    return hits


def digits(phone: str) -> str:
    return phone.removeprefix("+44")  # matches E.164, whatsapp:+44..., and JSON alike


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for "nothing changed"."""
    with engine.connect() as connection:
        return {t.name: sorted(tuple(map(repr, row)) for row in
                                connection.execute(select(t)).all())
                for t in Base.metadata.sorted_tables}


def counts(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        return {
            "petitions": dict(session.execute(select(Petition.slug, Petition.signature_count))
                              .all()),
            "channels": sorted(session.execute(select(ChannelCount.petition_id,
                                                      ChannelCount.channel,
                                                      ChannelCount.count)).all()),
            "signatures": Counter(session.execute(
                select(Signature.petition_id, Signature.channel, Signature.nation,
                       Signature.postcode_area)).all()),
            "numbers": sorted(session.execute(select(Signature.petition_id, Signature.number))
                              .all()),
        }


def keys(sessions: sessionmaker[Session]) -> set[tuple[str, str]]:
    with sessions() as session:
        return set(session.execute(select(InboundMessage.channel, InboundMessage.provider_id))
                   .all())


def run(sessions: sessionmaker[Session], config: Config, now: dt.datetime,
        engine: Engine) -> retention.Report:
    """A dry run first (which must change nothing and report the same), then the run."""
    before = snapshot(engine)
    dry = retention.run(sessions, config, now, dry_run=True)
    assert snapshot(engine) == before, "--dry-run changed something"
    assert dry.dry_run
    report = retention.run(sessions, config, now, actor="test")
    assert dataclasses.replace(report, dry_run=True) == dry
    return report


# The tests -----------------------------------------------------------------------------------

def test_nothing_goes_before_its_time(bot: Service, two_petitions: Config,
                                      sessions: sessionmaker[Session], engine: Engine) -> None:
    meet_everyone(bot)
    before = snapshot(engine)
    report = run(sessions, two_petitions, T0 + dt.timedelta(days=29), engine)
    assert (report.inbound_texts, report.conversations, report.signatures, report.people) == (
        0, 0, 0, 0)
    after = snapshot(engine)
    # Only the answers kept for a provider's retry go: after a day, not 30.
    kept = ("audit_log", "inbound_messages")
    assert {k: v for k, v in after.items() if k not in kept} == {
        k: v for k, v in before.items() if k not in kept}
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).where(
            InboundMessage.replies.is_not(None))) == 0
        assert connection.scalar(select(func.count()).where(
            InboundMessage.body.is_not(None))) == len(before["inbound_messages"])
    with sessions() as session:
        [entry] = session.scalars(select(AuditEntry)).all()
    assert (entry.actor, entry.action) == ("test", "retention.run")
    assert entry.detail == {k: v for k, v in report.as_dict().items() if k != "dry_run"}


def test_after_30_days_texts_and_unfinished_signings_go_and_the_keys_stay(
        bot: Service, two_petitions: Config, sessions: sessionmaker[Session],
        engine: Engine) -> None:
    meet_everyone(bot)
    tallies, message_keys = counts(sessions), keys(sessions)
    with sessions() as session:
        texts = session.scalar(select(func.count()).where(InboundMessage.body.is_not(None)))
        old_sid = session.scalar(select(InboundMessage.provider_id).where(
            InboundMessage.channel == "sms").limit(1))
    # Her name in her own words, and in the answers kept for a provider's retry.
    assert found_in(engine, "Cara Lindqvist") == ["conversations.data=1",
                                                  "inbound_messages.body=1",
                                                  "inbound_messages.replies=2"]

    report = run(sessions, two_petitions, T0 + dt.timedelta(days=31), engine)

    assert report.inbound_texts == texts
    assert report.conversations == 1                 # Cara's, stopped at the review
    assert report.people == 2                        # Cara and Dev never signed
    for needle in ("Cara", "Lindqvist", "CF10", digits(CARA), DEV):
        assert found_in(engine, needle) == [], needle
    with sessions() as session:
        assert session.scalar(select(func.count()).where(InboundMessage.body.is_not(None))) == 0
    assert keys(sessions) == message_keys            # idempotency keys all kept
    assert counts(sessions) == tallies
    # A provider's very late retry of an old message still has no effect.
    [replay] = [bot.receive(Received(Channel.SMS, AMIRA, "Hi", old_sid, phone=AMIRA))]
    assert replay.duplicate
    # Signers keep their signatures, names and contact until the petition's time comes.
    assert "signatures.name=1" in found_in(engine, "Amira Okafor")
    assert found_in(engine, digits(AMIRA))


def test_six_months_after_closing_signatures_are_anonymised_and_signers_forgotten(
        bot: Service, two_petitions: Config, sessions: sessionmaker[Session],
        engine: Engine) -> None:
    meet_everyone(bot)
    tallies, message_keys = counts(sessions), keys(sessions)
    run(sessions, two_petitions, dt.datetime(2025, 7, 31, 12, tzinfo=dt.UTC), engine)
    assert "signatures.name=1" in found_in(engine, "Amira Okafor")  # not yet: 1 day early

    report = run(sessions, two_petitions, dt.datetime(2025, 8, 1, 12, tzinfo=dt.UTC), engine)

    assert report.signatures == 3                    # Amira, Ben and Eli's SIRT signatures
    assert report.people == 2                        # Amira and Ben; Eli is active elsewhere
    assert report.subscriptions == 2                 # Amira's and Eli's updates on SIRT
    for needle in ("Amira", "Okafor", digits(AMIRA), "Benedict", "Fairweather", "SW1A 1AA",
                   "EH1 1YZ"):
        assert found_in(engine, needle) == [], needle
    # Ben said STOP: his number stays on the suppression list, bare, and nowhere else.
    assert found_in(engine, digits(BEN)) == ["identities.address=1"]
    with sessions() as session:
        ben = session.scalar(select(Identity).where(Identity.address == BEN))
        assert ben is not None and ben.opted_out_at is not None
        assert (ben.supporter_id, ben.last_inbound_at) == (None, None)
        # Eli keeps the open petition's signature and contact; the SIRT one is anonymous.
        eli = session.scalar(select(Supporter).where(Supporter.phone == ELI))
        assert eli is not None
        mine = session.execute(select(Petition.slug, Signature.name).join(
            Petition, Petition.id == Signature.petition_id)
            .where(Signature.supporter_id == eli.id)).all()
        assert mine == [("other", "Elias Thornbury")]
        sirt = session.execute(select(Signature.name, Signature.postcode, Signature.postcode_area,
                                      Signature.consent_id, Signature.referral)
                               .join(Petition, Petition.id == Signature.petition_id)
                               .where(Petition.slug == "sirt")
                               .order_by(Signature.number)).all()
        assert sirt == [("", "SW1A", "SW", None, None), ("", "EH1", "EH", None, None),
                        ("", "BT1", "BT", None, None)]
        assert session.scalar(select(func.count()).select_from(Subscription)) == 1  # Eli's
    assert found_in(engine, "Elias Thornbury") == ["signatures.name=1"]
    assert counts(sessions) == tallies               # by petition, channel, nation, area
    assert keys(sessions) == message_keys

    again = run(sessions, two_petitions, dt.datetime(2025, 8, 3, tzinfo=dt.UTC), engine)
    assert (again.signatures, again.people, again.subscriptions) == (0, 0, 0)


def test_the_worker_runs_it_once_a_day(bot: Service, two_petitions: Config,
                                       sessions: sessionmaker[Session]) -> None:
    meet_everyone(bot)
    day = T0 + dt.timedelta(days=40)
    first = retention.run_if_due(sessions, two_petitions, day)
    assert first is not None and first.inbound_texts > 0
    assert retention.run_if_due(sessions, two_petitions, day + dt.timedelta(hours=23)) is None
    later = retention.run_if_due(sessions, two_petitions, day + dt.timedelta(hours=24))
    assert later is not None and later.inbound_texts == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "retention.run")) == 2


def test_an_idle_signer_keeps_everything_but_a_half_written_voice(
        bot: Service, two_petitions: Config, sessions: sessionmaker[Session],
        engine: Engine) -> None:
    sign(bot, Channel.SMS, AMIRA, "Amira Okafor", "SW1A 1AA")
    says(bot, Channel.SMS, AMIRA, "VOICE", "My sister waited two years for this treatment")
    with sessions() as session:
        assert session.scalar(select(Conversation.step)) == "voice_consent"
    report = run(sessions, two_petitions, T0 + dt.timedelta(days=31), engine)
    assert (report.conversations, report.people) == (1, 0)
    assert found_in(engine, "waited two years") == []
    assert "signatures.name=1" in found_in(engine, "Amira Okafor")
    with sessions() as session:
        assert session.scalar(select(Conversation.step)) == "new"


# The command ---------------------------------------------------------------------------------

def test_retention_run_dry_run_reports_and_changes_nothing_then_the_run_does(
        config: Config, sessions: sessionmaker[Session], database_url: str, engine: Engine,
        tmp_path: Path) -> None:
    # The shipped content (SIRT open): signed and half-signed 60 days ago.
    bot = Service(config, sessions, clock=Clock(dt.datetime.now(dt.UTC) - dt.timedelta(days=60)))
    bot.sync_petitions()
    sign(bot, Channel.SMS, AMIRA, "Amira Okafor", "SW1A 1AA")
    says(bot, Channel.WHATSAPP, CARA, "Hi", "SIGN", "YES", "Cara Lindqvist")
    source = CONFIG.read_text(encoding="utf-8")
    changed = re.sub(r'(?m)^issue_file\s*=\s*"(.*)"',
                     lambda m: f'issue_file = "{(ROOT / m[1]).as_posix()}"', source)
    config_path = tmp_path / "config.toml"
    config_path.write_text(changed, encoding="utf-8")
    assert load_config(config_path).retention.inbound_text_days == 30
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOG_"))}
    env.update(DATABASE_URL=database_url, PETITIONBOT_CONFIG=str(config_path))

    def petitionbot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    before = snapshot(engine)
    dry = petitionbot("retention", "run", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove" in dry.stdout and "nothing was changed" in dry.stdout
    assert re.search(r"unfinished conversations cleared\s+1\b", dry.stdout), dry.stdout
    assert snapshot(engine) == before

    done = petitionbot("retention", "run")
    assert done.returncode == 0, done.stderr
    assert re.search(r"message texts blanked\s+\d", done.stdout), done.stdout
    assert re.search(r"people forgotten\s+1\b", done.stdout), done.stdout
    assert found_in(engine, "Cara Lindqvist") == []
    assert "Amira Okafor" not in done.stdout + done.stderr
    assert digits(AMIRA) not in done.stdout + done.stderr
