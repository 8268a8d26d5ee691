"""The audit log: who did what, when, newest first, a page at a time, each entry in words
(audit_words), filtered by person and by kind of action."""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from typing import Any

from flask import current_app, render_template, request, url_for
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from models import Announcement, AuditEntry, Petition, StaffUser
from models.inbox import SavedReply
from models.staff import ApiToken, StaffAddress
from webhooks.console.access import page_number, route
from webhooks.console.audit_words import Known, Person, describe, kind_of, who
from webhooks.runtime import runtime

PAGE = 50
PAGES = {  # a target's kind -> its page in the console, and the page's parameter
    "announcement": ("staff.announcement", "announcement_id"),
    "conversation": ("staff.conversation", "conversation_id"),
    "supporter": ("staff.supporter", "supporter_id"),
    "petition": ("staff.petition_history", "slug"),
    "text": ("staff.bot_text", "key"),
}
# Anyone may type any email at the login form: those names stay out of the "who" filter.
NOT_A_PERSON = "login.failed"


@route("/audit", "admin")
def audit() -> Any:
    page = page_number()
    actor = request.args.get("actor", "").strip()[:254]
    action = request.args.get("action", "").strip()[:64]
    chosen: list[ColumnElement[bool]] = []
    if actor:
        chosen.append(AuditEntry.actor.in_({actor, actor.lower()}))
    if action:
        chosen.append(AuditEntry.action == action)
    with runtime().sessions() as session:
        total = session.scalar(select(func.count()).select_from(AuditEntry)
                               .where(*chosen)) or 0
        entries = session.scalars(
            select(AuditEntry).where(*chosen)
            .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .offset((page - 1) * PAGE).limit(PAGE)).all()
        actions = session.scalars(select(AuditEntry.action).distinct()).all()
        actors = session.scalars(select(AuditEntry.actor).distinct()
                                 .where(AuditEntry.action != NOT_A_PERSON)).all()
        known = _known(session, entries)
    pages = max((total + PAGE - 1) // PAGE, 1)
    return render_template(
        "staff/audit.html", entries=[(e.at, describe(e, known)) for e in entries],
        page=page, pages=pages, total=total, actor=actor, action=action,
        zone=runtime().config.broadcast.timezone,
        actors=sorted(((a, who(a, known)) for a in actors), key=lambda p: p[1].lower()),
        actions=sorted(((a, kind_of(a)) for a in actions), key=lambda p: p[1]))


def _known(session: Session, entries: Sequence[AuditEntry]) -> Known:
    """Names for the people and things the entries name, in a few small queries."""
    rt = runtime()
    ids: dict[str, set[int]] = {}
    for entry in entries:
        kind, _, ident = (entry.target or "").partition(":")
        if ident.isdigit() and len(ident) <= 18:
            ids.setdefault(kind, set()).add(int(ident))
    codes = {p.slug: p.code or p.slug.upper() for p in rt.service.content(session).petitions}
    staff: dict[str, Person] = {}
    for row in session.scalars(select(StaffUser)):
        staff[row.email] = staff[str(row.id)] = Person(row.email, row.name, row.role)
    telegram = {address: staff[str(user)] for address, user in session.execute(
        select(StaffAddress.address, StaffAddress.staff_user_id)
        .where(StaffAddress.channel == "telegram")) if str(user) in staff}
    announcements = {str(i): (text, codes.get(slug, slug.upper()))
                     for i, text, slug in session.execute(
                         select(Announcement.id, Announcement.text, Petition.slug)
                         .join(Petition, Petition.id == Announcement.petition_id)
                         .where(Announcement.id.in_(ids.get("announcement", ()))))}
    tokens = {str(i): name for i, name in session.execute(
        select(ApiToken.id, ApiToken.name).where(ApiToken.id.in_(ids.get("token", ()))))}
    replies = {str(i): title for i, title in session.execute(
        select(SavedReply.id, SavedReply.title)
        .where(SavedReply.id.in_(ids.get("saved_reply", ()))))}
    return Known(zoneinfo.ZoneInfo(rt.config.broadcast.timezone), staff, telegram,
                 announcements, tokens, replies, codes, _page_of)


def _page_of(kind: str, ident: str) -> str | None:
    """The console page of what an entry names, if it has one."""
    endpoint, parameter = PAGES.get(kind, ("", ""))
    if endpoint not in current_app.view_functions or not ident:
        return None
    value: dict[str, Any] = {parameter: ident}
    if parameter.endswith("_id"):
        if not ident.isdigit() or len(ident) > 18:
            return None
        value[parameter] = int(ident)
    return url_for(endpoint, **value)
