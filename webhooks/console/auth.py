"""Signing in and out: the password, then, for those who use two-factor sign-in, a code.

Attempts are throttled in the database (bot/shell/throttle.py: per account and address,
per address, per account), counted before the password or code is checked, so a burst of
guesses at once is held to the limit on every process, Redis or not; while a limit is
reached nothing is even checked. A code counts against the same windows as a password.

Between the two steps nobody is signed in: the (signed) cookie only says whose password
was right, and when, for CODE_STEP; the sign-in row (bot/shell/staff.py) is opened once the
code is right, and logout ends it.

Each sign-in also gives the browser a device cookie for that account (signed, HttpOnly,
sent to the login pages only, for DEVICE_LIFETIME): its attempts at that account are then
held to the device's own small window instead of the account's, so that a stranger
guessing from elsewhere cannot lock the real person out (throttle.DEVICE). It names the
account by a keyed hash, never the email, and it signs nobody in.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from bot.shell import staff as accounts
from bot.shell import throttle, two_factor
from models import StaffUser
from webhooks.console.access import Principal, hashed, me, now, route
from webhooks.console.forms import ActionForm, LoginForm
from webhooks.runtime import runtime

# A plain path (and query) inside the console: printable ASCII only, no backslash (some
# browsers read it as "/"), so no control character can reach the Location header.
_CONSOLE_PATH = re.compile(r"/staff/[\x21-\x5b\x5d-\x7e]*")
CODE_STEP = dt.timedelta(minutes=5)  # how long the code may follow the password
PENDING = "signing_in"  # the cookie's key for someone between the two steps
DEVICE_COOKIE = "petitionbot_device"
DEVICE_LIFETIME = dt.timedelta(days=90)  # from the last sign-in on the device


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=40)],
                       description="The 6 digits your authenticator app shows now, or one "
                                   "of your recovery codes.",
                       render_kw={"autocomplete": "one-time-code", "autocapitalize": "none",
                                  "spellcheck": "false", "maxlength": 40})


@dataclass(frozen=True)
class Pending:
    """Whose password was right, and until when the code may follow it."""

    user_id: int
    email: str
    tag: str  # fingerprint of the password hash: a password changed since ends this
    until: float  # epoch seconds
    next: str


@route("/login", "public", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("staff/login.html", form=form,
                               first_run=request.method == "GET" and _no_staff())
    rt = runtime()
    email = accounts.normalise_email(form.email.data or "")
    keys = _keys(email)
    attempted = now()
    with rt.sessions.begin() as db:  # committed before the (slow) password check
        allowed = throttle.login_attempt(db, keys, attempted)
    if not allowed:
        return render_template("staff/login.html", form=form, limited=True), 429
    pending = principal = None
    with rt.sessions.begin() as db:
        user = accounts.authenticate(db, email, form.password.data or "")
        if user is None:
            accounts.audit(db, email, "login.failed", None, _where(), now())
        elif two_factor.is_on(user):  # the throttle's windows are cleared by the code
            pending = Pending(user.id, user.email, accounts.fingerprint(user.password_hash),
                              (now() + CODE_STEP).timestamp(),
                              _safe_next(request.args.get("next")))
        else:
            principal = _sign_in(db, user, keys, attempted)
    if user is None:
        flash("That email and password do not match an account.", "error")
        return render_template("staff/login.html", form=form), 401
    if pending is not None:
        session.clear()  # nothing from before survives; nobody is signed in yet
        session[PENDING] = asdict(pending)
        return redirect(url_for("staff.login_code"))
    assert principal is not None
    start(principal)
    return remember_device(redirect(_safe_next(request.args.get("next"))), email)


@route("/login/code", "public", methods=["GET", "POST"])
def login_code() -> Any:
    pending = _pending()
    if pending is None:
        flash("Sign in again: the code must follow the password within 5 minutes.", "error")
        return redirect(url_for("staff.login"))
    form = CodeForm()
    if not form.validate_on_submit():
        return render_template("staff/login.html", form=form, step="code")
    rt = runtime()
    keys = _keys(pending.email)
    attempted = now()
    with rt.sessions.begin() as db:
        allowed = throttle.login_attempt(db, keys, attempted)
    if not allowed:
        return render_template("staff/login.html", form=form, step="code", limited=True), 429
    principal = None
    with rt.sessions.begin() as db:
        user = db.get(StaffUser, pending.user_id)
        if user is None or not user.active or (
                accounts.fingerprint(user.password_hash) != pending.tag):
            user = None
        elif two_factor.check(db, user, form.code.data or "", now()):
            principal = _sign_in(db, user, keys, attempted)
        else:
            accounts.audit(db, pending.email, "login.code_failed", None, _where(), now())
    if user is None:
        session.pop(PENDING, None)
        flash("Sign in again, please.", "error")
        return redirect(url_for("staff.login"))
    if principal is None:
        flash("That code is not right. Type the 6 digits your app shows now, or a "
              "recovery code.", "error")
        return render_template("staff/login.html", form=CodeForm(formdata=None),
                               step="code"), 401
    start(principal)
    return remember_device(redirect(pending.next), pending.email)


@route("/logout", "viewer", methods=["POST"])
def logout() -> Any:
    ActionForm()  # CSRF was checked before the view; the form only documents it
    with runtime().sessions.begin() as db:  # ended for every copy of the cookie
        accounts.close_session(db, me().token, now())
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("staff.login"))


def principal_of(user: StaffUser, token: str) -> Principal:
    """Who a browser is signed in as, for its sign-in named by `token`."""
    return Principal(user.id, user.email, user.role, accounts.fingerprint(user.password_hash),
                     token)


def start(principal: Principal) -> None:
    """Make this browser's session the given sign-in (a fresh cookie, nothing kept)."""
    session.clear()
    session.permanent = True
    login_user(principal)


def _sign_in(db: Session, user: StaffUser, keys: throttle.LoginKeys,
             attempted: dt.datetime) -> Principal:
    token = accounts.open_session(db, user, now())
    throttle.login_succeeded(db, keys, attempted, now())
    accounts.audit(db, user.email, "login", None, None, now())
    return principal_of(user, token)


def _keys(email: str) -> throttle.LoginKeys:
    return throttle.LoginKeys.of(str(current_app.config["SECRET_KEY"]), email,
                                 request.remote_addr or "", device=device_of(email))


def _devices() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(str(current_app.config["SECRET_KEY"]), salt="staff-device")


def device_of(email: str) -> str | None:
    """The device id in this browser's device cookie, if the cookie is one this app signed
    for `email`'s account less than DEVICE_LIFETIME ago; else None (no cookie, another
    account's, expired or forged)."""
    raw = request.cookies.get(DEVICE_COOKIE, "")
    if not raw:
        return None
    try:
        account, device = _devices().loads(raw, max_age=int(DEVICE_LIFETIME.total_seconds()))
    except (BadData, ValueError, TypeError):
        return None
    if not (isinstance(account, str) and isinstance(device, str)):
        return None
    return device if hmac.compare_digest(account, hashed(email)) else None


def remember_device(response: Response, email: str) -> Response:
    """`response` giving this browser a device cookie for `email`'s account, just signed
    in (the same device id if it had one)."""
    device = device_of(email) or secrets.token_urlsafe(16)
    response.set_cookie(DEVICE_COOKIE, _devices().dumps([hashed(email), device]),
                        max_age=int(DEVICE_LIFETIME.total_seconds()),
                        path=url_for("staff.login"), httponly=True, samesite="Strict",
                        secure=bool(current_app.config["SESSION_COOKIE_SECURE"]))
    return response


def _where() -> dict[str, str]:
    return {"address": hashed(request.remote_addr or "")[:12]}


def _pending() -> Pending | None:
    """Who is between the password and the code, if they still are."""
    raw = session.get(PENDING)
    try:
        pending = Pending(**raw) if isinstance(raw, dict) else None
    except TypeError:  # a cookie from another version of this form
        return None
    if pending is None or pending.until < now().timestamp():
        return None
    return pending


def _safe_next(target: str | None) -> str:
    """Only a plain path inside the console: never another site (an open redirect), and
    never a control character, backslash or "//" that could bend the Location header."""
    if target and _CONSOLE_PATH.fullmatch(target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and "//" not in parts.path:
            return target
    return url_for("staff.dashboard")


def _no_staff() -> bool:
    with runtime().sessions() as db:
        return not accounts.has_staff(db)
