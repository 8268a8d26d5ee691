"""Signatures out of the database: streamed CSV or JSON for hand-in, and campaign stats."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.infra.config import Config
from bot.shell.dashboard import paper_sources
from bot.shell.petition_content import live_petitions
from models import ChannelCount, Petition, Signature, Subscription

# `source`: where a paper signature was collected (empty for the bot's channels).
COLUMNS = ("number", "name", "postcode", "country", "nation", "channel", "source", "referral",
           "signed_at")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """A spreadsheet must show a cell, never run it (CSV formula injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def write_signatures(session: Session, slug: str, fmt: str, out: TextIO,
                     batch: int = 2000) -> int:
    """Write every signature of a petition in number order; rows are streamed."""
    query = (select(Signature.number, Signature.name, Signature.postcode, Signature.country,
                    Signature.nation, Signature.channel, Signature.source, Signature.referral,
                    Signature.signed_at)
             .join(Petition, Petition.id == Signature.petition_id)
             .where(Petition.slug == slug).order_by(Signature.number)
             .execution_options(yield_per=batch))
    rows = session.execute(query)
    written = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([safe_cell(v.isoformat() if hasattr(v, "isoformat") else v)
                             for v in row])
            written += 1
        return written
    out.write("[")
    for row in rows:
        record = dict(zip(COLUMNS, row, strict=True))
        record["signed_at"] = row.signed_at.isoformat()
        out.write(("," if written else "") + "\n" + json.dumps(record, ensure_ascii=False))
        written += 1
    out.write("\n]\n")
    return written


def campaign_stats(session: Session, config: Config) -> str:
    """A plain-text summary of every petition, as its content is now."""
    lines = []
    for content in live_petitions(session, config):
        petition = session.scalar(select(Petition).where(Petition.slug == content.slug))
        if petition is None:
            continue
        external = content.external_count
        lines.append(f"{content.slug}: {petition.signature_count + external:,} signatures "
                     f"({petition.signature_count:,} here"
                     + "".join(f", {e.count:,} on {e.source}" for e in content.external) + ")")
        channels = session.execute(select(ChannelCount.channel, ChannelCount.count)
                                   .where(ChannelCount.petition_id == petition.id)).all()
        lines.append("  by channel: " + ", ".join(f"{c} {n:,}" for c, n in channels))
        paper = paper_sources(session, petition.id)
        if paper:
            lines.append("  on paper: " + ", ".join(f"{s} {n:,}" for s, n in paper))
        nations = session.execute(
            select(Signature.nation, func.count()).where(Signature.petition_id == petition.id)
            .group_by(Signature.nation).order_by(func.count().desc())).all()
        lines.append("  by nation: " + (", ".join(f"{n} {c:,}" for n, c in nations) or "-"))
        subscribers = session.scalar(select(func.count()).select_from(Subscription)
                                     .where(Subscription.petition_id == petition.id)) or 0
        lines.append(f"  receiving updates: {subscribers:,}")
    return "\n".join(lines)
