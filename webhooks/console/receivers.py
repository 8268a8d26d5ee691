"""Event receivers (admins): the systems that are sent events (a CRM, a mailing tool). Add
one (its secret is shown once, in the answer to adding it), test it with a ping, see its
deliveries and send parked ones again, remove it.

Every rule and audit entry is bot.shell.event_receivers', which the staff API's /webhooks
calls too; this page only turns its refusals into form errors and its results into words.
Pages read on models.db.long_read (counting deliveries keeps no writer waiting); removing
clears for at most event_receivers.REMOVE_WITHIN seconds and leaves the rest to the worker.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from bot.shell import event_receivers as receivers
from bot.shell import events
from models.db import long_read
from webhooks.console.access import me, now, route
from webhooks.console.forms import ActionForm, CheckboxesField, choices
from webhooks.runtime import runtime

NOT_FOUND = "No such receiver (it may have been removed)."


class ReceiverForm(FlaskForm):
    url = StringField("Address (URL)", validators=[DataRequired(),
                                                   Length(max=receivers.MAX_URL)],
                      description="Where your system takes events, e.g. "
                                  "https://crm.example.org/petitionbot. It must be https.",
                      render_kw={"autocomplete": "off", "inputmode": "url",
                                 "maxlength": receivers.MAX_URL})
    events = CheckboxesField("Events to send", choices=choices(
        [(t, t) for t in events.TYPES]), validate_choice=True)

    def validate_events(self, field: Any) -> None:
        if not field.data:
            raise ValidationError("Choose at least one kind of event to send.")


class SendAgainForm(FlaskForm):
    delivery = HiddenField(validators=[Optional(), Regexp(r"^[1-9][0-9]{0,18}$")])


@route("/receivers", "admin", methods=["GET", "POST"])
def receivers_list() -> Any:
    form = ReceiverForm()
    added = secret = None
    if form.validate_on_submit():
        rt = runtime()
        try:
            with rt.sessions.begin() as session:
                added, secret = receivers.add(session, form.url.data, form.events.data,
                                              me().email, rt.config.api, now())
        except receivers.ReceiverError as error:
            field = form.url if error.field == "url" else form.events
            said = str(error).removeprefix(f"{error.field}: ")
            field.errors = [*field.errors, said[:1].upper() + said[1:] + "."]
        else:
            form = ReceiverForm(formdata=None)
    with long_read(runtime().engine) as connection, Session(connection) as session:
        rows = receivers.receivers(session)
    # The secret is in this answer only: never flashed (the session cookie is signed, not
    # secret), never stored anywhere the console can show it again.
    return render_template("staff/receivers.html", form=form, rows=rows, added=added,
                           secret=secret, meanings=receivers.MEANINGS,
                           ), 400 if form.errors else 200


@route("/receivers/<id:receiver_id>", "admin")
def receiver(receiver_id: int) -> Any:
    with long_read(runtime().engine) as connection, Session(connection) as session:
        found = receivers.receiver(session, receiver_id)
    if found is None:
        abort(404, NOT_FOUND)
    return render_template("staff/receiver.html", r=found, meanings=receivers.MEANINGS,
                           shown=receivers.PARKED_SHOWN)


@route("/receivers/<id:receiver_id>/ping", "admin", methods=["POST"])
def ping_receiver(receiver_id: int) -> Any:
    ActionForm()
    with runtime().sessions.begin() as session:
        event = receivers.ping(session, receiver_id, me().email, now())
    if event is None:
        abort(404, NOT_FOUND)
    flash(f"A ping ({event}) is on its way. Its answer shows here as the last answer once "
          "the worker has posted it; reload in a few seconds.", "info")
    return redirect(url_for("staff.receiver", receiver_id=receiver_id), code=303)


@route("/receivers/<id:receiver_id>/remove", "admin", methods=["GET", "POST"])
def remove_receiver(receiver_id: int) -> Any:
    form = ActionForm()
    if form.validate_on_submit():
        rt = runtime()
        with rt.sessions.begin() as session:
            removed = receivers.remove(session, receiver_id, me().email, now())
        if not removed:
            abort(404, NOT_FOUND)
        receivers.start_clearing(rt.sessions, receiver_id)
        flash(f"Receiver {receiver_id} removed: nothing more is sent to it.", "info")
        return redirect(url_for("staff.receivers_list"), code=303)
    with long_read(runtime().engine) as connection, Session(connection) as session:
        found = receivers.receiver(session, receiver_id, shown=0)
    if found is None:
        abort(404, NOT_FOUND)
    return render_template("staff/receiver_remove.html", r=found, form=form)


@route("/receivers/<id:receiver_id>/send-again", "admin", methods=["POST"])
def receiver_send_again(receiver_id: int) -> Any:
    form = SendAgainForm()
    if not form.validate_on_submit():
        abort(400, "That is not a delivery of this receiver.")
    chosen = [int(form.delivery.data)] if form.delivery.data else None
    with runtime().sessions.begin() as session:
        sent = receivers.send_again(session, receiver_id, chosen, me().email, now())
    if sent is None:
        abort(404, NOT_FOUND)
    if sent.sent:
        flash(f"{sent.sent:,} parked deliver{'y is' if sent.sent == 1 else 'ies are'} back "
              "in the outbox: the worker sends them again.", "info")
    elif not sent.passed_over:
        flash("Nothing was sent again: it was no longer parked (sent again already, or "
              "the receiver was emptied).", "info")
    if sent.passed_over:
        one = sent.passed_over == 1
        flash(f"{sent.passed_over:,} parked deliver{'y was' if one else 'ies were'} not sent "
              "again: a later event about the same supporter has already reached the "
              f"receiver, so {'it' if one else 'they'} would arrive out of order.", "info")
    return redirect(url_for("staff.receiver", receiver_id=receiver_id), code=303)
