"""What changes an announcement's course: a test to the requester's own phone, approval
(send now or schedule; by someone other than its author and last editor when config
requires it, a rule broadcast.approve applies on every path; asked again first when quiet
hours would hold it), cancel, pause, resume, discard a draft. Each is audited; a refused
action changes nothing."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response
from wtforms import HiddenField
from wtforms.validators import AnyOf, Optional

from bot.shell import announcement_status, broadcast, staff_links
from models import Announcement, StaffUser
from webhooks.console.access import me, now, record, route
from webhooks.console.announcements import _described, _get
from webhooks.console.forms import ActionForm, ApproveForm
from webhooks.runtime import runtime


@route("/announcements/<id:announcement_id>/test", "editor", methods=["POST"])
def send_test(announcement_id: int) -> Any:
    """A copy of the announcement to the requester's linked phone and Telegram (and the
    operator's test numbers), sent at once; staff_links.send_test decides who gets it."""
    ActionForm()  # the CSRF token was checked before the view ran
    rt = runtime()
    try:
        with rt.sessions.begin() as session:
            source = _get(session, announcement_id)
            user = session.get(StaffUser, me().id)
            if user is None:
                abort(403, "Your account no longer exists.")
            test = staff_links.send_test(session, rt.config, source, user, now())
            record(session, "announcement.test", f"announcement:{test.announcement_id}",
                   {"copy_of": source.id, "queued": test.queued})
    except broadcast.BroadcastError as error:  # raised inside: nothing was committed
        flash(_sentence(error), "error")
        return _back(announcement_id)
    flash(f"Test queued: {test.queued} message(s), as announcement {test.announcement_id}; "
          "the workers send it now.", "info")
    return redirect(url_for("staff.announcement", announcement_id=test.announcement_id))


class ConfirmedApproveForm(ApproveForm):
    """Approve, with the answer to "approve during quiet hours?" once it has been asked."""

    confirm = HiddenField(validators=[Optional(), AnyOf(["yes"])])


@route("/announcements/<id:announcement_id>/approve", "admin", methods=["POST"])
def approve(announcement_id: int) -> Any:
    """Approve a draft to send now or at a time; when quiet hours would hold it, a page
    asks first, and its hidden `confirm` completes the approval."""
    form = ConfirmedApproveForm()
    rt = runtime()
    if not form.validate():
        flash("Choose when to send it.", "error")
        return _back(announcement_id)
    at: dt.datetime | None = None
    if form.when.data == "later":
        if form.at.data is None:
            flash("Give the date and time to send it.", "error")
            return _back(announcement_id)
        tz = zoneinfo.ZoneInfo(rt.config.broadcast.timezone)
        at = form.at.data.replace(tzinfo=tz).astimezone(dt.UTC)
        if at <= now():
            flash("That time has passed: choose a time in the future, or send now.", "error")
            return _back(announcement_id)
    start = announcement_status.approval_start(now(), rt.config, at)
    if start.warning is not None and form.confirm.data != "yes":
        return _ask_first(announcement_id, form, start.warning)
    try:
        with rt.sessions.begin() as session:
            found = _get(session, announcement_id, lock=True)
            # approve() refuses its author and last editor, and a version changed since
            # the page that was approved was shown.
            queued = broadcast.approve(session, rt.config, found, me().email, now(), at=at,
                                       seen=form.seen.data or None)
            record(session, "announcement.approve", f"announcement:{found.id}",
                   {**_described(found), "scheduled_at": at.isoformat() if at else None,
                    "queued": queued})
    except broadcast.BroadcastError as error:  # raised inside: nothing was committed
        flash(_sentence(error), "error")
        return _back(announcement_id)
    message = (f"Approved: scheduled for {form.at.data:%d %b %Y %H:%M}." if at else
               f"Approved and sending to {queued:,} recipient(s).")
    if start.warning is not None:
        begins = announcement_status.when_in_words(start.at, now(), rt.config)
        message += f" Quiet hours hold it: it starts sending at {begins}."
    flash(message, "info")
    return _back(announcement_id)


def _ask_first(announcement_id: int, form: ConfirmedApproveForm,
               warning: announcement_status.Explanation) -> Any:
    """The quiet-hours question, asked only of someone who may approve this version (else
    the refusal approve() would give, at once)."""
    rt = runtime()
    with rt.sessions() as session:  # read only: nothing is approved until the answer
        found = _get(session, announcement_id)
        try:
            broadcast.check_approval(rt.config, found, me().email, seen=form.seen.data or None)
        except broadcast.BroadcastError as error:
            flash(_sentence(error), "error")
            return _back(announcement_id)
        recipients = sum(broadcast.preview(session, rt.config, found, now())
                         .recipients.values())
    return render_template("staff/approve_confirm.html", a=found, form=form, warning=warning,
                           recipients=recipients)


@route("/announcements/<id:announcement_id>/cancel", "admin", methods=["POST"])
def cancel(announcement_id: int) -> Any:
    def act(session: Session, found: Announcement) -> str:
        skipped = broadcast.cancel(session, found, me().email, now())
        return f"Cancelled; {skipped:,} message(s) not yet sent will not be."

    return _act(announcement_id, "announcement.cancel", act)


@route("/announcements/<id:announcement_id>/discard", "editor", methods=["POST"])
def discard(announcement_id: int) -> Any:
    def act(session: Session, found: Announcement) -> str:
        if found.status != "draft":
            raise broadcast.BroadcastError("only a draft can be discarded; ask an admin to "
                                           "cancel it")
        broadcast.cancel(session, found, me().email, now())
        return "Draft discarded."

    return _act(announcement_id, "announcement.discard", act)


@route("/announcements/<id:announcement_id>/pause", "admin", methods=["POST"])
def pause(announcement_id: int) -> Any:
    def act(session: Session, found: Announcement) -> str:
        broadcast.pause(session, found)
        return "Paused: nothing more is sent until you resume it."

    return _act(announcement_id, "announcement.pause", act)


@route("/announcements/<id:announcement_id>/resume", "admin", methods=["POST"])
def resume(announcement_id: int) -> Any:
    def act(session: Session, found: Announcement) -> str:
        broadcast.resume(session, found)
        return "Resumed."

    return _act(announcement_id, "announcement.resume", act)


def _act(announcement_id: int, action: str,
         act: Callable[[Session, Announcement], str]) -> Response:
    ActionForm()  # the CSRF token was checked before the view ran
    try:
        with runtime().sessions.begin() as session:
            found = _get(session, announcement_id, lock=True)
            message = act(session, found)
            record(session, action, f"announcement:{announcement_id}",
                   {"status": found.status})
    except broadcast.BroadcastError as error:  # raised inside: nothing was committed
        flash(_sentence(error), "error")
        return _back(announcement_id)
    flash(message, "info")
    return _back(announcement_id)


def _back(announcement_id: int) -> Response:
    return redirect(url_for("staff.announcement", announcement_id=announcement_id), code=303)


def _sentence(error: Exception) -> str:
    text = str(error)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
