"""Colleagues (admins): who has an account, with which role, when they last signed in and
whether they use two-factor sign-in; invitations (a link shown once, to pass on: the
product sends no email), role changes, deactivation. And the invitation's own page, where
a new colleague chooses their name and password.

The rules live in bot/shell/staff.py and bot/shell/invites.py, which also audit; these
views parse and render.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import EmailField, PasswordField, RadioField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from bot.shell import invites, two_factor
from bot.shell import staff as accounts
from models import StaffUser
from webhooks.console.access import me, now, route
from webhooks.console.account import name_field, new_password_field, sentence
from webhooks.console.auth import principal_of, start
from webhooks.console.forms import ActionForm
from webhooks.runtime import runtime

ROLE_CHOICES = [
    SelectChoice("viewer", "Viewer: sees the figures, announcements and the inbox"),
    SelectChoice("editor", "Editor: also drafts announcements and answers supporters"),
    SelectChoice("admin", "Admin: also approves and sends, exports, and manages colleagues"),
]
WHY_UNUSABLE = {
    invites.Unusable.UNKNOWN: "This link is not an invitation we know. Check that it was "
                              "copied whole, or ask an admin for a new one.",
    invites.Unusable.USED: "This invitation has been used already. If it was you, sign in; "
                           "if not, tell an admin.",
    invites.Unusable.EXPIRED: "This invitation has expired. Ask an admin for a new one.",
    invites.Unusable.REVOKED: "This invitation was withdrawn. Ask an admin if you still "
                              "need an account.",
}
# A change to a colleague: (database, the colleague, the admin making it).
Change = Callable[[Session, StaffUser, StaffUser | None], None]


class InviteForm(FlaskForm):
    email = EmailField("Their email address", validators=[DataRequired(), Length(max=254)],
                       render_kw={"autocomplete": "off"})
    role = RadioField("Role", choices=ROLE_CHOICES, default="viewer",
                      validators=[DataRequired()])


class AcceptForm(FlaskForm):
    name = name_field()
    password = new_password_field("Choose a password")
    again = PasswordField("The same password again",
                          validators=[DataRequired(), EqualTo("password",
                                                              "The two passwords differ.")],
                          render_kw={"autocomplete": "new-password"})


@route("/colleagues", "admin", methods=["GET", "POST"])
def colleagues() -> Any:
    form = InviteForm()
    made = None
    if form.validate_on_submit():
        with runtime().sessions.begin() as db:
            try:
                made = invites.invite(db, form.email.data or "", form.role.data or "",
                                      db.get(StaffUser, me().id), now())
            except accounts.StaffError as error:
                form.email.errors.append(sentence(str(error)))
        if made is not None:
            form = InviteForm(formdata=None)
    link = None
    if made is not None:  # shown in this answer only, never flashed or kept
        link = runtime().settings.public_base_url + url_for("staff.invite", token=made.token)
    with runtime().sessions() as db:
        people = accounts.colleagues(db)
        invitations = invites.pending(db, now())
    return render_template("staff/colleagues.html", form=form, people=people,
                           invitations=invitations, made=made, link=link, roles=ROLE_CHOICES,
                           two_factor_on=two_factor.is_on,
                           action=ActionForm()), 400 if form.errors else 200


@route("/colleagues/<id:staff_id>/role", "admin", methods=["POST"])
def colleague_role(staff_id: int) -> Any:
    ActionForm()  # CSRF was checked before the view; the form only documents it
    role = request.form.get("role", "")
    return _change(staff_id, lambda db, target, by: accounts.change_role(
        db, target, role, by, now()), f"is now {_article(role)} {role}")


@route("/colleagues/<id:staff_id>/deactivate", "admin", methods=["POST"])
def colleague_deactivate(staff_id: int) -> Any:
    ActionForm()
    return _change(staff_id, lambda db, target, by: accounts.deactivate(db, target, by, now()),
                   "is deactivated: their sign-ins have ended and their API tokens are "
                   "revoked")


@route("/colleagues/<id:staff_id>/reactivate", "admin", methods=["POST"])
def colleague_reactivate(staff_id: int) -> Any:
    ActionForm()
    return _change(staff_id, lambda db, target, by: accounts.reactivate(db, target, by, now()),
                   "can sign in again")


@route("/colleagues/invites/<id:invite_id>/revoke", "admin", methods=["POST"])
def invite_revoke(invite_id: int) -> Any:
    ActionForm()
    with runtime().sessions.begin() as db:
        found = invites.revoke(db, invite_id, db.get(StaffUser, me().id), now())
        email = found.email if found is not None else None
    if email is None:
        flash("That invitation is no longer waiting.", "error")
    else:
        flash(f"The invitation for {email} is withdrawn: its link opens nothing now.", "info")
    return redirect(url_for("staff.colleagues"), code=303)


@route("/invite/<token>", "public", methods=["GET", "POST"])
def invite(token: str) -> Any:
    form = AcceptForm()
    try:
        with runtime().sessions() as db:
            found = invites.usable(db, token, now())
    except invites.InviteUnusable as error:
        return _unusable(error)
    if not form.validate_on_submit():
        return render_template("staff/invite.html", form=form, invite=found), (
            400 if form.errors else 200)
    try:
        with runtime().sessions.begin() as db:
            user = invites.accept(db, token, form.name.data or "", form.password.data or "",
                                  now())
            principal = principal_of(user, accounts.open_session(db, user, now()))
            accounts.audit(db, user.email, "login", None, None, now())
    except invites.InviteUnusable as error:  # used in another tab meanwhile
        return _unusable(error)
    except accounts.StaffError as error:  # nothing was written: the link still works
        form.password.errors.append(sentence(str(error)))
        return render_template("staff/invite.html", form=form, invite=found), 400
    start(principal)
    flash(f"Welcome, {user.name}. Your account is ready.", "info")
    return redirect(url_for("staff.account"), code=303)


def _change(staff_id: int, change: Change, done: str) -> Any:
    """Apply one change to a colleague, and say how it went."""
    with runtime().sessions.begin() as db:
        target = db.get(StaffUser, staff_id)
        if target is None:
            abort(404, "There is no such colleague.")
        try:
            change(db, target, db.get(StaffUser, me().id))
        except accounts.StaffError as error:
            failed = sentence(str(error))
        else:
            failed = ""
        email = target.email
    if failed:
        flash(failed, "error")
    else:
        flash(f"{email} {done}.", "info")
    return redirect(url_for("staff.colleagues"), code=303)


def _unusable(error: invites.InviteUnusable) -> Any:
    """The page of a link that opens nothing, saying why: 404 if it never did, else 410."""
    status = 404 if error.why is invites.Unusable.UNKNOWN else 410
    return render_template("staff/invite.html", unusable=WHY_UNUSABLE[error.why]), status


def _article(role: str) -> str:
    return "an" if role[:1] in "aeiou" else "a"


