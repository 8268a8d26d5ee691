"""Public JSON about petitions (the health check is in webhooks/ops.py)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify

from bot.shell.counts import public_counts
from webhooks.runtime import runtime

bp = Blueprint("api", __name__)


@bp.get("/api/petitions/<slug>")
def petition(slug: str) -> Response:
    rt = runtime()
    with rt.sessions() as session:
        try:
            content = rt.service.content(session).petition(slug)  # staff's latest
        except KeyError:
            abort(404, "no such petition")
        counts = public_counts(session, content)
    return jsonify({"slug": content.slug, "title": content.title, "goal": content.goal,
                    "counts": counts})
