"""The staff inbox: supporters' words that wait for a person, and the staff's answers.

Viewers read; editors and admins reply, assign, note, close and record follow-ups. The
lists put flagged conversations first (words that may show distress), then the newest
waiting. A reply travels through the outbox like an announcement; the reply box says what
the channel will do with the text (SMS segments and cost, Telegram's rendering, WhatsApp's
24-hour window) and, when the channel cannot carry a reply now, why, with the button off.
Every action is audited by conversation id, never with the supporter's words.
"""

from __future__ import annotations

import datetime as dt
import html
import unicodedata
from collections.abc import Callable
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.core.gsm import encoding, is_gsm7, segments, to_gsm7, unicode_forcing_characters
from bot.infra.config import Config
from bot.infra.db_errors import database_unavailable
from bot.shell import inbox
from models import InboxConversation, InboxMessage, StaffUser
from webhooks.console.access import bp, cache_seconds, console, me, now, route
from webhooks.console.forms import (
    ActionForm,
    FollowUpForm,
    NoteForm,
    ReplyForm,
    SavedReplyForm,
)
from webhooks.runtime import runtime

VIEWS = ("open", "mine", "closed")
MAX_REPLY = 1600  # the longest SMS Twilio takes (ReplyForm says the same)
COUNT_SECONDS = 5.0  # the navigation's waiting count may be this old


@route("/inbox", "viewer")
def inbox_list() -> Any:
    view = request.args.get("view", "open")
    if view not in VIEWS:
        view = "open"
    with runtime().sessions() as session:
        rows = inbox.summaries(session, view, me().id)
    return render_template("staff/inbox.html", rows=rows, view=view, views=VIEWS,
                           at=now())


@route("/inbox/<id:conversation_id>", "viewer")
def conversation(conversation_id: int) -> Any:
    at = now()
    with runtime().sessions() as session:
        thread = inbox.thread(session, conversation_id, at)
        if thread is None:
            abort(404, "No such conversation (the supporter may have deleted their data).")
        saved = inbox.saved_replies(session) if me().may("editor") else []
    form = ReplyForm()
    return render_template(
        "staff/conversation.html", t=thread, s=thread.summary, at=at, form=form,
        note=NoteForm(formdata=None), saved=saved, price=runtime().config.console.sms_price,
        most_segments=inbox.MAX_SMS_SEGMENTS)


@route("/inbox/<id:conversation_id>/preview.json", "editor", methods=["POST"])
def reply_preview_json(conversation_id: int) -> Any:
    """What the supporter's channel will do with the text typed so far."""
    with runtime().sessions() as session:
        found = session.get(InboxConversation, conversation_id)
        if found is None:
            abort(404, "No such conversation.")
        can = inbox.reach(session, found, now())
    text = request.form.get("text", "")[:MAX_REPLY]
    data = reply_preview(found.channel, text, runtime().config)
    data["reach"] = _reach(can)
    return jsonify(data)


@route("/inbox/<id:conversation_id>/reply", "editor", methods=["POST"])
def reply(conversation_id: int) -> Any:
    form = ReplyForm()
    if not form.validate_on_submit():
        flash(f"Write a reply first (at most {MAX_REPLY:,} characters).", "error")
        return _back(conversation_id)
    text = form.text.data or ""
    if _act(conversation_id, lambda session, staff: inbox.reply(
            session, conversation_id, staff, text, now())):
        flash("Reply queued: it goes out through the outbox at the channel's pace; its "
              "delivery state shows below.", "info")
    return _back(conversation_id)


@route("/inbox/<id:conversation_id>/assign", "editor", methods=["POST"])
def assign(conversation_id: int) -> Any:
    ActionForm()
    if _act(conversation_id, lambda session, staff: inbox.assign(
            session, conversation_id, staff, now())):
        flash("Assigned to you.", "info")
    return _back(conversation_id)


@route("/inbox/<id:conversation_id>/note", "editor", methods=["POST"])
def note(conversation_id: int) -> Any:
    form = NoteForm()
    if not form.validate_on_submit():
        flash("Write the note first (at most 2,000 characters).", "error")
        return _back(conversation_id)
    text = form.note.data or ""
    if _act(conversation_id, lambda session, staff: inbox.note(
            session, conversation_id, staff, text, now())):
        flash("Note added (staff only: the supporter never sees it).", "info")
    return _back(conversation_id)


@route("/inbox/<id:conversation_id>/close", "editor", methods=["POST"])
def close(conversation_id: int) -> Any:
    ActionForm()
    if not _act(conversation_id, lambda session, staff: inbox.close(
            session, conversation_id, staff, now())):
        return _back(conversation_id)
    flash(f"Conversation #{conversation_id} closed. If they write again, a new one opens.",
          "info")
    return redirect(url_for("staff.inbox_list"), code=303)


@route("/inbox/<id:conversation_id>/messages/<id:message_id>/follow-up", "editor",
       methods=["POST"])
def follow_up(conversation_id: int, message_id: int) -> Any:
    form = FollowUpForm()
    if not form.validate_on_submit():
        flash("Say what was done (at most 2,000 characters).", "error")
        return _back(conversation_id)
    done = form.action.data or ""

    def record_it(session: Session, staff: StaffUser) -> None:
        owner = session.scalar(select(InboxMessage.conversation_id).where(
            InboxMessage.id == message_id))
        if owner != conversation_id:
            raise inbox.NotFound(f"no message {message_id} in this conversation")
        inbox.follow_up(session, message_id, staff, done, now())

    if _act(conversation_id, record_it):
        flash("Follow-up recorded.", "info")
    return _back(conversation_id)


@route("/inbox/replies", "editor", methods=["GET", "POST"])
def saved_replies() -> Any:
    form = SavedReplyForm()
    if form.validate_on_submit():
        try:
            with runtime().sessions.begin() as session:
                inbox.save_reply(session, _staff(session), form.title.data or "",
                                 form.text.data or "", now())
        except inbox.Invalid as error:
            flash(str(error), "error")
        else:
            flash("Saved reply added.", "info")
            return redirect(url_for("staff.saved_replies"), code=303)
    with runtime().sessions() as session:
        rows = inbox.saved_replies(session)
    return render_template("staff/saved_replies.html", form=form, rows=rows), (
        400 if form.errors else 200)


@route("/inbox/replies/<id:reply_id>/delete", "editor", methods=["POST"])
def delete_saved_reply(reply_id: int) -> Any:
    ActionForm()
    try:
        with runtime().sessions.begin() as session:
            inbox.delete_saved_reply(session, _staff(session), reply_id)
    except inbox.NotFound:
        flash("That saved reply was already deleted.", "info")
    else:
        flash("Saved reply deleted.", "info")
    return redirect(url_for("staff.saved_replies"), code=303)


# What the channel will do with a reply ------------------------------------------------------

def reply_preview(channel: str, text: str, config: Config) -> dict[str, Any]:
    """The reply as the supporter's channel will carry it (plain data, for the page and
    its live JSON): on SMS folded to GSM-7 (inbox.as_sent), with segments and cost; on
    Telegram with the HTML its sender escapes it to; on WhatsApp as typed."""
    sent = inbox.as_sent(channel, text)
    data: dict[str, Any] = {"channel": channel, "characters": len(text.strip())}
    if channel == "sms":
        count = segments(sent)
        price = config.console.sms_price
        data["sms"] = {
            "text": sent, "length": len(sent), "encoding": encoding(sent),
            "gsm7": is_gsm7(text), "segments": count, "unicode_segments": segments(text),
            "replaced": [{"character": c, "name": unicodedata.name(c, "unknown").lower(),
                          "becomes": to_gsm7(c)} for c in unicode_forcing_characters(text)],
            "price": price, "cost": round(count * price, 2),
            "too_long": count > inbox.MAX_SMS_SEGMENTS,
            "most_segments": inbox.MAX_SMS_SEGMENTS,
        }
    elif channel == "telegram":
        data["telegram"] = {"text": sent, "html": html.escape(sent, quote=False),
                            "too_long": len(sent) >= inbox.MAX_TELEGRAM,
                            "most": inbox.MAX_TELEGRAM - 1}
    else:
        data["whatsapp"] = {"text": sent, "too_long": len(sent) > inbox.MAX_WHATSAPP,
                            "most": inbox.MAX_WHATSAPP}
    return data


def _reach(reach: inbox.Reach) -> dict[str, Any]:
    closes = reach.window_closes_at
    return {"can_send": reach.can_send, "reason": reach.reason, "channel": reach.channel,
            "window_closes_at": closes.isoformat() if closes else None}


# Helpers --------------------------------------------------------------------------------------

def _staff(session: Session) -> StaffUser:
    user = session.get(StaffUser, me().id)
    if user is None:
        abort(403, "Your account no longer exists.")
    return user


def _act(conversation_id: int, do: Callable[[Session, StaffUser], object]) -> bool:
    """Do `do(session, staff)` in one transaction (the inbox audits it in the staff's
    name): 404 for a conversation or message that is not there, 403 when the role may not;
    what the channel or the text does not allow is flashed, and False returned."""
    try:
        with runtime().sessions.begin() as session:
            do(session, _staff(session))
    except inbox.NotFound:
        abort(404, "No such conversation or message (the supporter may have deleted their "
                   "data).")
    except inbox.NotAllowed as error:
        abort(403, f"You may not: {error}.")
    except inbox.CannotReply as error:
        flash(f"Not sent. {error.reason}", "error")
        return False
    except inbox.Invalid as error:
        flash(str(error), "error")
        return False
    return True


def _back(conversation_id: int) -> Any:
    return redirect(url_for("staff.conversation", conversation_id=conversation_id), code=303)


def waiting_count() -> int:
    """Conversations waiting for a person (a few seconds old at most)."""
    def load() -> int:
        with runtime().sessions() as session:
            return inbox.waiting_count(session)

    try:
        count: int = console().cache.get(("inbox", "waiting"), load,
                                          cache_seconds(COUNT_SECONDS))
    except SQLAlchemyError as error:
        # The navigation of an error page ("the database is unavailable") must still show.
        if not database_unavailable(error):
            raise
        return 0
    return count


def waited(since: dt.datetime | None, at: dt.datetime) -> str:
    """How long someone has waited, in words: "4 min", "3 h", "2 days"."""
    if since is None:
        return ""
    minutes = max(int((at - since).total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


@bp.app_context_processor
def inbox_globals() -> dict[str, Any]:
    """`inbox_waiting()` for the navigation and the dashboard (asked only when shown)."""
    return {"inbox_waiting": waiting_count, "waited": waited}
