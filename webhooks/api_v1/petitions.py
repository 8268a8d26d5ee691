"""A petition's live content and counts (GET /api/v1/petitions/<slug>, viewer)."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from bot.shell.counts import public_counts
from webhooks.api_v1.auth import refuse, route
from webhooks.runtime import runtime


@route("/petitions/<slug>", "viewer", methods=["GET"])
def petition(slug: str) -> Any:
    rt = runtime()
    try:
        content = rt.config.petition(slug)
    except KeyError:
        refuse(404, "no such petition")
    with rt.sessions() as session:
        counts = public_counts(session, content)
    return jsonify({
        "slug": content.slug, "title": content.title, "summary": content.summary,
        "text": content.issue, "decision_makers": list(content.decision_makers),
        "goal": content.goal, "external": counts["external"],
        "closed": content.closed.isoformat() if content.closed else None,
        "counts": counts,
    })
