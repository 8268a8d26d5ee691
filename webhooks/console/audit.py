"""The audit log: who did what, when, newest first, a page at a time."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from sqlalchemy import func, select

from models import AuditEntry
from webhooks.console.access import page_number, route
from webhooks.runtime import runtime

PAGE = 50


@route("/audit", "admin")
def audit() -> Any:
    page = page_number()
    actor = request.args.get("actor", "").strip()[:254]
    action = request.args.get("action", "").strip()[:64]
    query = select(AuditEntry)
    counting = select(func.count()).select_from(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor.lower())
        counting = counting.where(AuditEntry.actor == actor.lower())
    if action:
        query = query.where(AuditEntry.action == action)
        counting = counting.where(AuditEntry.action == action)
    with runtime().sessions() as session:
        total = session.scalar(counting) or 0
        entries = session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                                  .offset((page - 1) * PAGE).limit(PAGE)).all()
        actions = session.scalars(select(AuditEntry.action).distinct()
                                  .order_by(AuditEntry.action)).all()
    pages = max((total + PAGE - 1) // PAGE, 1)
    return render_template("staff/audit.html", entries=entries, page=page, pages=pages,
                           total=total, actor=actor, action=action, actions=actions)
