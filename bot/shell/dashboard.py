"""The campaign's figures for staff, by aggregate queries only.

Totals and channels come from the kept counters (no COUNT(*)); signatures per day are
grouped by hour over the (petition_id, signed_at) index, then folded into local days in
Python (so a day follows the campaign's time zone, summer time included); places and
referrals are one GROUP BY each.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.infra.config import Config
from bot.infra.config import Petition as PetitionContent
from bot.shell.broadcast import progress
from models import Announcement, ChannelCount, Identity, Petition, Signature, Subscription
from models.db import is_postgres
from models.supporters import petition_id

CHANNELS = ("sms", "whatsapp", "telegram", "paper")  # paper: imported (bot/shell/imports.py)
NATIONS = ("england", "scotland", "wales", "northern_ireland", "crown_dependencies", "bfpo",
           "outside_uk")


@dataclass(frozen=True)
class Totals:
    slug: str
    title: str
    goal: int
    here: int
    external: tuple[tuple[str, int], ...]
    by_channel: dict[str, int]

    @property
    def total(self) -> int:
        return self.here + sum(n for _, n in self.external)

    @property
    def paper(self) -> int:
        """Of `here`, those collected on paper and imported."""
        return self.by_channel.get("paper", 0)

    @property
    def by_bot(self) -> int:
        """Of `here`, those signed with the bot (SMS, WhatsApp, Telegram)."""
        return self.here - self.paper


@dataclass
class Figures:
    totals: Totals
    per_day: list[tuple[dt.date, int]] = field(default_factory=list)
    nations: list[tuple[str, int]] = field(default_factory=list)
    areas: list[tuple[str, int]] = field(default_factory=list)
    referrals: list[tuple[str, int]] = field(default_factory=list)
    subscribers: int = 0
    deliveries: list[tuple[Announcement, dict[str, int]]] = field(default_factory=list)
    paper_sources: list[tuple[str, int]] = field(default_factory=list)

    @property
    def optin_rate(self) -> float:
        """Of those who signed with the bot (paper signers were never asked)."""
        return self.subscribers / self.totals.by_bot if self.totals.by_bot else 0.0


def totals(session: Session, content: PetitionContent) -> Totals:
    """The count and where it comes from, for the petition's live content."""
    row = session.execute(select(Petition.id, Petition.signature_count)
                          .where(Petition.slug == content.slug)).one()
    channels = dict(session.execute(select(ChannelCount.channel, ChannelCount.count)
                                    .where(ChannelCount.petition_id == row.id)).all())
    return Totals(content.slug, content.title, content.goal, row.signature_count,
                  tuple((e.source, e.count) for e in content.external),
                  {c: channels.get(c, 0) for c in CHANNELS})


def per_day(session: Session, pid: int, since: dt.date, until: dt.date,
            timezone: str) -> list[tuple[dt.date, int]]:
    """Signatures on each local day from `since` to `until` (inclusive), zeros included."""
    tz = zoneinfo.ZoneInfo(timezone)
    start = dt.datetime.combine(since, dt.time(), tz).astimezone(dt.UTC)
    if is_postgres(session):
        hour = func.to_char(func.timezone("UTC", Signature.signed_at), "YYYY-MM-DD HH24")
    else:
        hour = func.strftime("%Y-%m-%d %H", Signature.signed_at)
    rows = session.execute(select(hour, func.count()).where(
        Signature.petition_id == pid, Signature.signed_at >= start).group_by(hour)).all()
    days: Counter[dt.date] = Counter()
    for text, count in rows:
        utc = dt.datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
        days[utc.astimezone(tz).date()] += count
    span = (until - since).days + 1
    return [(since + dt.timedelta(d), days.get(since + dt.timedelta(d), 0))
            for d in range(max(span, 0))]


def places(session: Session, pid: int) -> list[tuple[str, str | None, int]]:
    """(nation, postcode area, signatures) for every place that has any."""
    rows = session.execute(
        select(Signature.nation, Signature.postcode_area, func.count())
        .where(Signature.petition_id == pid)
        .group_by(Signature.nation, Signature.postcode_area)).all()
    return sorted(rows, key=lambda r: (_nation_order(r[0]), r[1] or "~"))


def by_nation(rows: list[tuple[str, str | None, int]]) -> list[tuple[str, int]]:
    nations: Counter[str] = Counter()
    for nation, _, count in rows:
        nations[nation] += count
    return sorted(nations.items(), key=lambda item: _nation_order(item[0]))


def by_area(rows: list[tuple[str, str | None, int]]) -> list[tuple[str, int]]:
    areas: Counter[str] = Counter()
    for _, area, count in rows:
        areas[area or "none"] += count
    return areas.most_common()


def referrals(session: Session, pid: int, limit: int = 10) -> list[tuple[str, int]]:
    # Grouped on the bare column, so the (petition_id, referral) index answers it alone.
    rows = session.execute(select(Signature.referral, func.count())
                           .where(Signature.petition_id == pid).group_by(Signature.referral)
                           .order_by(func.count().desc()).limit(limit)).all()
    return [(ref or "direct", count) for ref, count in rows]


def paper_sources(session: Session, pid: int) -> list[tuple[str, int]]:
    """Paper signatures by where they were collected, most first."""
    rows = session.execute(select(Signature.source, func.count())
                           .where(Signature.petition_id == pid, Signature.channel == "paper")
                           .group_by(Signature.source)
                           .order_by(func.count().desc(), Signature.source)).all()
    return [(source or "unknown", count) for source, count in rows]


def subscribers(session: Session, pid: int) -> int:
    """People (not channels) who asked for updates about the petition."""
    return session.scalar(
        select(func.count(func.distinct(Identity.supporter_id)))
        .select_from(Subscription).join(Identity, Identity.id == Subscription.identity_id)
        .where(Subscription.petition_id == pid)) or 0


def recent_deliveries(session: Session, pid: int,
                      limit: int = 5) -> list[tuple[Announcement, dict[str, int]]]:
    announcements = session.scalars(
        select(Announcement).where(Announcement.petition_id == pid,
                                   Announcement.started_at.is_not(None))
        .order_by(Announcement.started_at.desc()).limit(limit)).all()
    return [(a, progress(session, a.id)) for a in announcements]


def figures(session: Session, config: Config, content: PetitionContent, today: dt.date,
            days: int = 60) -> Figures:
    """Everything the dashboard shows for one petition (its live content)."""
    top = totals(session, content)
    pid = petition_id(session, content.slug)
    assert pid is not None
    rows = places(session, pid)
    return Figures(
        totals=top,
        per_day=per_day(session, pid, today - dt.timedelta(days=days - 1), today,
                        config.broadcast.timezone),
        nations=by_nation(rows), areas=by_area(rows)[:20],
        referrals=referrals(session, pid), subscribers=subscribers(session, pid),
        deliveries=recent_deliveries(session, pid),
        paper_sources=paper_sources(session, pid) if top.paper else [])


def _nation_order(nation: str) -> int:
    return NATIONS.index(nation) if nation in NATIONS else len(NATIONS)


__all__ = ["Figures", "Totals", "by_area", "by_nation", "figures", "paper_sources", "per_day",
           "places", "referrals", "subscribers", "totals"]
