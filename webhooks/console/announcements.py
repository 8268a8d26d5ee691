"""Announcements: list, compose with a live preview, edit a draft, watch progress, and
why one is not moving (bot.shell.announcement_status, the same words as the API's).
(Approving, sending and stopping are in announcement_actions.)"""

from __future__ import annotations

import html
import unicodedata
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.core.conversation import Channel
from bot.core.gsm import segments, to_gsm7
from bot.infra.config import Config
from bot.shell import announcement_status, broadcast
from models import Announcement, Petition
from models.supporters import petition_id
from webhooks.console.access import cache_seconds, console, me, now, record, route
from webhooks.console.forms import ActionForm, ApproveForm, ComposeForm, areas_of
from webhooks.runtime import runtime

ACTIVE = ("approved", "scheduled", "sending", "paused")
PROGRESS_SECONDS = 1.5
SAID_BY_STATUS = ("scheduled", "paused")  # the list shows these already


@route("/announcements", "viewer")
def announcements() -> Any:
    rt = runtime()
    with rt.sessions() as session:
        rows = session.execute(select(Announcement, Petition.slug)
                               .join(Petition, Petition.id == Announcement.petition_id)
                               .order_by(Announcement.id.desc()).limit(100)).all()
        counts = broadcast.delivery_counts(session, [a.id for a, _ in rows])
        # A short reason beside each one that is waiting (few are, at any time), beyond
        # what its status and time already say.
        reasons: dict[int, str] = {}
        for a, _ in rows:
            holds = _status(session, a).holds if a.status in ACTIVE else []
            shorts = [h.short for h in holds if h.code not in SAID_BY_STATUS]
            if shorts:
                reasons[a.id] = "; ".join(shorts[:2])
    return render_template("staff/announcements.html", rows=rows, counts=counts,
                           reasons=reasons)


@route("/announcements/new", "editor", methods=["GET", "POST"])
def compose() -> Any:
    form = ComposeForm()
    rt = runtime()
    if form.validate_on_submit():
        try:
            with rt.sessions.begin() as session:
                draft = broadcast.create(session, rt.config, rt.config.default_petition,
                                         form.text.data or "", me().email, _audience(form),
                                         now=now(), content_sid=form.template_sid.data or None)
                record(session, "announcement.create", f"announcement:{draft.id}",
                       _described(draft))
                draft_id = draft.id
        except broadcast.BroadcastError as error:
            flash(str(error), "error")
        else:
            flash("Draft saved. Check the preview, send a test, then ask an admin to approve "
                  "it.", "info")
            return redirect(url_for("staff.announcement", announcement_id=draft_id))
    return render_template("staff/compose.html", form=form, editing=None)


@route("/announcements/<id:announcement_id>/edit", "editor", methods=["GET", "POST"])
def edit(announcement_id: int) -> Any:
    rt = runtime()
    with rt.sessions() as session:
        found = _get(session, announcement_id)
        if found.status != "draft":
            flash(f"Only a draft can be edited; this one is {found.status}.", "error")
            return redirect(url_for("staff.announcement", announcement_id=announcement_id))
    form = ComposeForm(data=None if request.method == "POST" else {
        "text": found.text, "channels": found.channels, "nations": found.nations,
        "areas": ", ".join(found.postcode_areas), "test_group": found.test_group,
        "template_sid": found.whatsapp_content_sid or ""})
    if form.validate_on_submit():
        try:
            with rt.sessions.begin() as session:
                draft = _get(session, announcement_id, lock=True)
                if draft.status != "draft":  # an admin may have approved it meanwhile
                    raise broadcast.BroadcastError("not saved: the announcement is no longer "
                                                   "a draft")
                # broadcast.edit records who changed it: they may not approve it now.
                changed = broadcast.edit(session, draft, form.text.data or "",
                                         _audience(form), me().email,
                                         form.template_sid.data or None)
                if changed:
                    record(session, "announcement.edit", f"announcement:{draft.id}",
                           _described(draft))
        except broadcast.BroadcastError as error:  # raised inside: nothing was committed
            flash(str(error)[:1].upper() + str(error)[1:] + ".", "error")
        else:
            flash("Draft updated." if changed else "Nothing was changed.", "info")
        return redirect(url_for("staff.announcement", announcement_id=announcement_id))
    return render_template("staff/compose.html", form=form, editing=found)


@route("/announcements/preview.json", "editor", methods=["POST"])
def preview_json() -> Any:
    """The live preview: what each channel shows, recipients, SMS cost, WhatsApp window."""
    form = ComposeForm()
    form.validate()
    errors = {name: list(errs) for name, errs in form.errors.items() if name != "text"}
    rt = runtime()
    with rt.sessions() as session:  # closed, never committed: previewing changes nothing
        pid = petition_id(session, rt.config.default_petition)
        audience = _audience(form)
        draft = Announcement(
            petition_id=pid, status="draft", text=form.text.data or "",
            channels=list(audience.channels), nations=list(audience.nations),
            postcode_areas=list(audience.postcode_areas), test_group=audience.test_group,
            whatsapp_content_sid=form.template_sid.data or None)
        data = preview_data(session, rt.config, draft)
    return jsonify({**data, "errors": errors})


def preview_data(session: Session, config: Config, draft: Announcement) -> dict[str, Any]:
    """The preview as plain data (for the JSON endpoint and the announcement's page)."""
    p = broadcast.preview(session, config, draft, now())
    channels = draft.channels or [c.value for c in Channel]
    raw = broadcast.compose(draft.text, Channel.WHATSAPP, config)  # before GSM-7 folding
    data: dict[str, Any] = {"recipients": p.recipients, "total": sum(p.recipients.values()),
                            "channels": channels}
    if Channel.SMS in channels:
        sms_to = p.recipients.get(Channel.SMS, 0)
        data["sms"] = {
            "text": p.texts[Channel.SMS], "recipients": sms_to,
            "segments": p.sms_segments, "encoding": p.sms_encoding,
            "length": len(p.texts[Channel.SMS]),
            "unicode_characters": [{"character": c, "name": unicodedata.name(c, "unknown"),
                                    "becomes": to_gsm7(c)} for c in p.sms_replaced],
            "unicode_segments": segments(raw),
            "price": config.console.sms_price,
            "cost": round(sms_to * p.sms_segments * config.console.sms_price, 2),
        }
    if Channel.TELEGRAM in channels:
        text = p.texts[Channel.TELEGRAM]
        data["telegram"] = {"text": text, "html": html.escape(text, quote=False),
                            "recipients": p.recipients.get(Channel.TELEGRAM, 0)}
    if Channel.WHATSAPP in channels:
        data["whatsapp"] = {"text": p.texts[Channel.WHATSAPP],
                            "recipients": p.recipients.get(Channel.WHATSAPP, 0),
                            "outside_window": p.whatsapp_outside_window,
                            "template": p.whatsapp_template}
    return data


@route("/announcements/<id:announcement_id>", "viewer")
def announcement(announcement_id: int) -> Any:
    rt = runtime()
    with rt.sessions() as session:
        found = _get(session, announcement_id)
        data = preview_data(session, rt.config, found)
        status = _status(session, found)
    # The same rule approve() applies, said before the admin tries.
    blocked = broadcast.approval_refusal(rt.config, found, me().email)
    return render_template("staff/announcement.html", a=found, preview=data,
                           counts=status.counts, explained=status,
                           approve_form=ApproveForm(seen=broadcast.digest(found)),
                           action=ActionForm(), blocked=blocked,
                           test_group=rt.config.staff.test_group, active=ACTIVE)


@route("/announcements/<id:announcement_id>/progress.json", "viewer")
def progress_json(announcement_id: int) -> Any:
    """Polled every 2 s by each open page: one GROUP BY (and what explains a wait),
    shared for a second or two."""

    def load() -> dict[str, Any]:
        with runtime().sessions() as session:
            found = _get(session, announcement_id)
            status = _status(session, found)
        counts = status.counts
        return {"status": found.status, "counts": counts, "total": sum(counts.values()),
                "done": found.status in ("sent", "cancelled"), "moving": status.moving,
                "explanations": [e.as_dict() for e in status.explanations]}

    return jsonify(console().cache.get(("progress", announcement_id), load,
                                       cache_seconds(PROGRESS_SECONDS)))


def _status(session: Session, found: Announcement) -> announcement_status.AnnouncementStatus:
    rt = runtime()
    return announcement_status.status_of(session, found, now(), rt.config, rt.settings)


def _audience(form: ComposeForm) -> broadcast.Audience:
    return broadcast.Audience(tuple(form.channels.data or ()), tuple(form.nations.data or ()),
                              tuple(areas_of(form.areas.data or "")),
                              bool(form.test_group.data))


def _described(a: Announcement) -> dict[str, Any]:
    return {"channels": a.channels, "nations": a.nations, "areas": a.postcode_areas,
            "test_group": a.test_group, "template": a.whatsapp_content_sid,
            "length": len(a.text)}


def _get(session: Session, announcement_id: int, lock: bool = False) -> Announcement:
    found = broadcast.find(session, announcement_id, lock)
    if found is None:
        abort(404, "No such announcement.")
    return found

