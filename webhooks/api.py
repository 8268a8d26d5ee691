"""Public JSON about petitions (the health check is in webhooks/ops.py)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify
from sqlalchemy import select

from models import ChannelCount, Petition
from webhooks.runtime import runtime

bp = Blueprint("api", __name__)


@bp.get("/api/petitions/<slug>")
def petition(slug: str) -> Response:
    rt = runtime()
    try:
        content = rt.config.petition(slug)
    except KeyError:
        abort(404, "no such petition")
    with rt.sessions() as session:
        row = session.execute(select(Petition.id, Petition.signature_count)
                              .where(Petition.slug == slug)).one()
        # .all(): dict() of a Result itself reads it as a mapping (Result has .keys()).
        by_channel = dict(session.execute(select(ChannelCount.channel, ChannelCount.count)
                                          .where(ChannelCount.petition_id == row.id)).all())
    external = [{"source": e.source, "count": e.count} for e in content.external]
    here = row.signature_count
    return jsonify({
        "slug": content.slug, "title": content.title, "goal": content.goal,
        "counts": {
            "total": here + content.external_count,
            "here": here,
            "external": external,
            "by_channel": {c: by_channel.get(c, 0) for c in ("sms", "whatsapp", "telegram")},
        },
    })
