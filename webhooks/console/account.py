"""Your account: everyone's own name, password and two-factor sign-in (set up with a QR
code, turned off, new recovery codes), and the way to their API tokens (tokens.py).

The rules live in bot/shell/staff.py and bot/shell/two_factor.py; these views parse and
render. An admin who must use two-factor sign-in (config.toml `[console]
admin_two_factor`) and has not set it up is taken to its set-up before any other page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import segno
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy.orm import Session
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from bot.shell import staff as accounts
from bot.shell import two_factor
from models import StaffUser
from webhooks.console.access import Principal, bp, me, now, route
from webhooks.console.auth import principal_of, start
from webhooks.runtime import runtime

T = TypeVar("T")
# What an admin who must set up two-factor sign-in may still open before doing so.
BEFORE_SET_UP = frozenset({"staff.two_factor_setup", "staff.logout", "staff.static", "staff.login",
                           "staff.login_code", "staff.invite"})


def name_field() -> Any:
    """A staff member's name (here, and on accepting an invitation)."""
    return StringField("Your name", validators=[DataRequired(), Length(max=accounts.MAX_NAME)],
                       description="As colleagues know you.",
                       render_kw={"autocomplete": "name", "maxlength": accounts.MAX_NAME})


def new_password_field(label: str) -> Any:
    """A password being chosen (here, and on accepting an invitation), with the rule
    bot.shell.staff applies to it."""
    return PasswordField(
        label, validators=[DataRequired(), Length(max=accounts.MAX_PASSWORD)],
        description=f"{accounts.MIN_PASSWORD} characters or more, and not your email "
                    "address. A few words you will remember make a good one.",
        render_kw={"autocomplete": "new-password"})


class NameForm(FlaskForm):
    name = name_field()


class PasswordForm(FlaskForm):
    password = PasswordField("Current password", validators=[DataRequired()],
                             render_kw={"autocomplete": "current-password"})
    new_password = new_password_field("New password")
    again = PasswordField("The new password again",
                          validators=[DataRequired(), EqualTo("new_password",
                                                              "The two new passwords differ.")],
                          render_kw={"autocomplete": "new-password"})


class ConfirmForm(FlaskForm):
    code = StringField("Code from the app", validators=[DataRequired(), Length(max=40)],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric",
                                  "maxlength": 40})


class TurnOffForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired()], id="off-password",
                             render_kw={"autocomplete": "current-password"})
    code = StringField("Code", validators=[DataRequired(), Length(max=40)], id="off-code",
                       description="From your authenticator app, or a recovery code.",
                       render_kw={"autocomplete": "one-time-code", "maxlength": 40})


class RecoveryCodesForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired()],
                             id="codes-password",
                             render_kw={"autocomplete": "current-password"})


@bp.before_request
def two_factor_first() -> Any:
    """An admin who must use two-factor sign-in sets it up before anything else."""
    if request.endpoint in BEFORE_SET_UP or not current_user.is_authenticated:
        return None
    if not two_factor.required(runtime().config.console, current_user.role):
        return None
    with runtime().sessions() as db:
        user = db.get(StaffUser, current_user.id)
        if user is None or two_factor.is_on(user):
            return None
    return redirect(url_for("staff.two_factor_setup"))


@route("/account", "viewer")
def account() -> Any:
    return _account_page()


@route("/account/name", "viewer", methods=["POST"])
def account_name() -> Any:
    form = NameForm()
    if not form.validate_on_submit():
        return _account_page(name_form=form)
    _, failed = _attempt(lambda db, user: accounts.rename(db, user, form.name.data or "",
                                                          now()))
    if failed:
        return _account_page(name_form=form, error=("name", failed))
    flash("Your name is saved.", "info")
    return redirect(url_for("staff.account"), code=303)


@route("/account/password", "viewer", methods=["POST"])
def account_password() -> Any:
    form = PasswordForm()
    if not form.validate_on_submit():
        return _account_page(password_form=form)

    def change(db: Session, user: StaffUser) -> Principal:
        accounts.change_password(db, user, form.password.data or "",
                                 form.new_password.data or "", now(), me().token)
        return principal_of(user, me().token)

    principal, failed = _attempt(change)
    if principal is None:
        return _account_page(password_form=form, error=("password", failed))
    start(principal)  # this sign-in goes on under the new password; the others have ended
    flash("Your password is changed. You are signed out everywhere else.", "info")
    return redirect(url_for("staff.account"), code=303)


@route("/account/two-factor", "viewer", methods=["GET", "POST"])
def two_factor_setup() -> Any:
    """The set-up: the page shows the key (made at the first visit, the same after a
    reload); a first code from the app confirms it. A POST changes nothing unless the code
    is right."""
    form = ConfirmForm()
    codes = None
    with runtime().sessions.begin() as db:
        user = _user(db)
        if request.method == "GET" and not two_factor.is_on(user):
            two_factor.setup_secret(user)
        elif form.validate_on_submit() and user.totp_secret and not two_factor.is_on(user):
            try:
                codes = two_factor.confirm(db, user, form.code.data or "", now())
            except two_factor.TwoFactorError as error:
                form.code.errors.append(sentence(str(error)))
    if codes is not None:
        return render_template("staff/two_factor.html", codes=codes, turned_on=True)
    if two_factor.is_on(user):
        return redirect(url_for("staff.account"), code=303)
    if user.totp_secret is None:  # a code sent before the page was ever shown
        flash("Scan this QR code with your app first, then type the code it shows.", "error")
        return redirect(url_for("staff.two_factor_setup"), code=303)
    uri = two_factor.provisioning_uri(user, user.totp_secret, _issuer())
    return render_template(
        "staff/two_factor.html", form=form, secret=user.totp_secret, qr=_qr(uri),
        required=two_factor.required(runtime().config.console, user.role)), (
        400 if form.errors else 200)


@route("/account/two-factor/off", "viewer", methods=["POST"])
def two_factor_off() -> Any:
    form = TurnOffForm()
    if not form.validate_on_submit():
        return _account_page(off_form=form)
    _, failed = _attempt(lambda db, user: two_factor.turn_off(
        db, user, form.password.data or "", form.code.data or "", runtime().config.console,
        now()))
    if failed:
        return _account_page(off_form=form, error=("off", failed))
    flash("Two-factor sign-in is off: you sign in with your password alone.", "info")
    return redirect(url_for("staff.account"), code=303)


@route("/account/two-factor/recovery-codes", "viewer", methods=["POST"])
def recovery_codes() -> Any:
    form = RecoveryCodesForm()
    if not form.validate_on_submit():
        return _account_page(codes_form=form)
    codes, failed = _attempt(lambda db, user: two_factor.regenerate(
        db, user, form.password.data or "", now()))
    if codes is None:
        return _account_page(codes_form=form, error=("codes", failed))
    return render_template("staff/two_factor.html", codes=codes, turned_on=False)


def _attempt(change: Callable[[Session, StaffUser], T]) -> tuple[T | None, str]:
    """Make a change to the signed-in account in one transaction: what it returns, or why
    it could not be made. The transaction commits either way (the rules change nothing
    before refusing, and a code that was right stays used); the page is drawn after it."""
    with runtime().sessions.begin() as db:
        try:
            return change(db, _user(db)), ""
        except accounts.StaffError as error:
            return None, sentence(str(error))


def _account_page(error: tuple[str, str] | None = None, **forms: FlaskForm) -> Any:
    """The account page; a form given (with its errors) replaces the blank one."""
    with runtime().sessions() as db:
        user = _user(db)
    blank = {"name_form": NameForm(formdata=None, name=user.name),
             "password_form": PasswordForm(formdata=None),
             "off_form": TurnOffForm(formdata=None),
             "codes_form": RecoveryCodesForm(formdata=None)}
    failed = bool(forms) and (error is not None or any(f.errors for f in forms.values()))
    return render_template(
        "staff/account.html", user=user, two_factor_on=two_factor.is_on(user),
        codes_left=two_factor.recovery_codes_left(user),
        required=two_factor.required(runtime().config.console, user.role),
        error=dict([error]) if error else {}, **{**blank, **forms}), 400 if failed else 200


def sentence(message: str) -> str:
    """A rule's message ("you cannot ...") as a sentence on a page."""
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _user(db: Session) -> StaffUser:
    user = db.get(StaffUser, me().id)
    assert user is not None, "a signed-in account exists (its sign-in row says so)"
    return user


def _issuer() -> str:
    """How the authenticator app names this account's codes."""
    return f"{runtime().config.organisation.short_name} petition console"


def _qr(uri: str) -> Markup:
    """The QR code as inline SVG: drawn here, so the secret goes to no other server."""
    svg = segno.make(uri, error="m").svg_inline(
        scale=4, title="QR code for your authenticator app", svgclass="qr", lineclass=None)
    return Markup(svg.replace("<svg ", '<svg role="img" ', 1))
