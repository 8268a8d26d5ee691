"""The dashboard: the count and where it comes from, signatures per day, places,
updates opt-ins, referrals and the latest delivery results."""

from __future__ import annotations

import dataclasses
import zoneinfo
from typing import Any

from flask import render_template, request

from bot.shell.dashboard import Figures, figures, totals
from webhooks.console.access import (
    CACHE_SECONDS,
    cache_seconds,
    console,
    now,
    petition_asked,
    route,
)
from webhooks.console.charts import bar_chart
from webhooks.console.forms import NATIONS
from webhooks.runtime import runtime

PERIODS = (30, 60, 90, 365)


@route("/", "viewer")
def dashboard() -> Any:
    rt = runtime()
    slug = petition_asked()
    days = request.args.get("days", 60, type=int)
    if days not in PERIODS:
        days = 60
    today = now().astimezone(zoneinfo.ZoneInfo(rt.config.broadcast.timezone)).date()

    with rt.sessions() as session:
        content = rt.service.content(session)  # staff's latest, e.g. the Change.org count

    def load() -> Figures:
        with rt.sessions() as session:
            return figures(session, rt.config, content.petition(slug), today, days)

    # The heavy aggregates may be a few seconds old; the counters and the content are
    # always read afresh.
    cached: Figures = console().cache.get(("dashboard", slug, days, today), load,
                                          cache_seconds(CACHE_SECONDS))
    with rt.sessions() as session:
        data = dataclasses.replace(cached, totals=totals(session, content.petition(slug)))
    return render_template("staff/dashboard.html", f=data, days=days, periods=PERIODS,
                           petitions=content.petitions, slug=slug, names=dict(NATIONS),
                           chart=bar_chart(data.per_day, _label(days)))


def _label(days: int) -> str:
    return f"Signatures collected here per day, last {days} days"

