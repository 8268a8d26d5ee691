"""Supporters' voices ("why I signed"): the moderation queue, flagged ones first.

Only a voice whose supporter consented to publication can be approved; a flagged one (a
possible safeguarding concern) is never published: staff follow it up instead."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import func, select, update

from models import Voice
from webhooks.console.access import me, now, page_number, record, route
from webhooks.console.forms import ActionForm
from webhooks.runtime import runtime

PAGE = 50
STATUSES = ("pending", "approved", "rejected")


@route("/voices", "editor")
def voices() -> Any:
    status = request.args.get("status", "pending")
    if status not in STATUSES:
        status = "pending"
    page = page_number()
    with runtime().sessions() as session:
        order = ((Voice.flagged.desc(), Voice.created_at, Voice.id) if status == "pending"
                 else (Voice.moderated_at.desc(), Voice.id.desc()))
        rows = session.scalars(select(Voice).where(Voice.status == status).order_by(*order)
                               .offset((page - 1) * PAGE).limit(PAGE)).all()
        counts = dict(session.execute(select(Voice.status, func.count())
                                      .group_by(Voice.status)).all())
        flagged = session.scalar(select(func.count()).select_from(Voice).where(
            Voice.status == "pending", Voice.flagged.is_(True))) or 0
    return render_template("staff/voices.html", voices=rows, status=status, counts=counts,
                           flagged=flagged, page=page, more=len(rows) == PAGE,
                           action=ActionForm(), statuses=STATUSES)


@route("/voices/<id:voice_id>/approve", "admin", methods=["POST"])
def approve_voice(voice_id: int) -> Any:
    return _moderate(voice_id, "approved")


@route("/voices/<id:voice_id>/reject", "admin", methods=["POST"])
def reject_voice(voice_id: int) -> Any:
    return _moderate(voice_id, "rejected")


def _moderate(voice_id: int, decision: str) -> Any:
    ActionForm()
    allowed = [Voice.id == voice_id, Voice.status != decision]
    if decision == "approved":
        allowed += [Voice.publish_consent.is_(True), Voice.flagged.is_(False)]
    with runtime().sessions.begin() as session:
        voice = session.get(Voice, voice_id)
        if voice is None:
            flash("That message no longer exists (the supporter may have deleted their "
                  "data).", "error")
            return _back()
        done = session.execute(update(Voice).where(*allowed).values(
            status=decision, moderated_by=me().email, moderated_at=now()))
        if not getattr(done, "rowcount", 0):
            flash(_why_not(voice, decision), "error")
            return _back()
        record(session, "voice.approve" if decision == "approved" else "voice.reject",
               f"voice:{voice_id}",
               {"flagged": voice.flagged, "publish_consent": voice.publish_consent})
    flash(f"Message {voice_id} {decision}.", "info")
    return _back()


def _why_not(voice: Voice, decision: str) -> str:
    if voice.status == decision:
        return f"Message {voice.id} is already {decision}."
    if voice.flagged:
        return (f"Message {voice.id} is flagged as a possible safeguarding concern; it is "
                "never published.")
    return (f"Message {voice.id} cannot be published: the supporter did not consent to "
            "publication.")


def _back() -> Any:
    status = request.args.get("status")
    return redirect(url_for("staff.voices", status=status if status in STATUSES else None),
                    code=303)
