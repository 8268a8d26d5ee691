"""Logging in and out.

Login attempts are throttled in the database (bot/shell/throttle.py: per account and address,
per address, per account), counted before the password is checked, so a burst of guesses
at once is held to the limit on every process, Redis or not; while a limit is reached no
password is even checked. A login opens a sign-in row (bot/shell/staff.py) that logout ends.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user

from bot.shell import staff as accounts
from bot.shell import throttle
from webhooks.console.access import Principal, hashed, me, now, route
from webhooks.console.forms import ActionForm, LoginForm
from webhooks.runtime import runtime

# A plain path (and query) inside the console: printable ASCII only, no backslash (some
# browsers read it as "/"), so no control character can reach the Location header.
_CONSOLE_PATH = re.compile(r"/staff/[\x21-\x5b\x5d-\x7e]*")


@route("/login", "public", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("staff/login.html", form=form,
                               first_run=request.method == "GET" and _no_staff())
    rt = runtime()
    email = accounts.normalise_email(form.email.data or "")
    address = request.remote_addr or ""
    keys = throttle.LoginKeys.of(str(current_app.config["SECRET_KEY"]), email, address)
    attempted = now()
    with rt.sessions.begin() as db:  # committed before the (slow) password check
        allowed = throttle.login_attempt(db, keys, attempted)
    if not allowed:
        return render_template("staff/login.html", form=form, limited=True), 429
    with rt.sessions.begin() as db:
        user = accounts.authenticate(db, email, form.password.data or "", now())
        if user is None:
            accounts.audit(db, email, "login.failed", None,
                           {"address": hashed(address)[:12]}, now())
        else:
            token = accounts.open_session(db, user, now())
            principal = Principal(user.id, user.email, user.role,
                                  accounts.fingerprint(user.password_hash), token)
            throttle.login_succeeded(db, keys, attempted, now())
            accounts.audit(db, user.email, "login", None, None, now())
    if user is None:
        flash("That email and password do not match an account.", "error")
        return render_template("staff/login.html", form=form), 401
    session.clear()  # a fresh session: nothing from before the login survives
    session.permanent = True
    login_user(principal)
    return redirect(_safe_next(request.args.get("next")))


@route("/logout", "viewer", methods=["POST"])
def logout() -> Any:
    ActionForm()  # CSRF was checked before the view; the form only documents it
    with runtime().sessions.begin() as db:  # ended for every copy of the cookie
        accounts.close_session(db, me().token, now())
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("staff.login"))


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
