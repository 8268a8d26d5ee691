"""Logging in and out. Failed logins are limited per account and per address (the
`limits` library: in memory, or in Redis when REDIS_URL is set, so every process shares
the count); while either limit is reached no password is even checked."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user

from bot import staff as accounts
from webhooks import runtime
from webhooks.staff.access import (
    LOGIN_PER_EMAIL,
    LOGIN_PER_IP,
    Principal,
    console,
    hashed,
    now,
    route,
)
from webhooks.staff.forms import ActionForm, LoginForm


@route("/login", "public", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("staff/login.html", form=form,
                               first_run=request.method == "GET" and _no_staff())
    limiter = console().limiter
    email = accounts.normalise_email(form.email.data or "")
    keys = ((LOGIN_PER_EMAIL, "staff-login-email", hashed(email)),
            (LOGIN_PER_IP, "staff-login-ip", hashed(request.remote_addr or "")))
    if not all(limiter.test(item, name, key) for item, name, key in keys):
        return render_template("staff/login.html", form=form, limited=True), 429
    with runtime().sessions.begin() as db:
        user = accounts.authenticate(db, email, form.password.data or "", now())
        if user is None:
            for item, name, key in keys:
                limiter.hit(item, name, key)
            accounts.audit(db, email, "login.failed", None,
                           {"address": hashed(request.remote_addr or "")[:12]}, now())
        else:
            principal = Principal(user.id, user.email, user.role,
                                  accounts.fingerprint(user.password_hash))
            accounts.audit(db, user.email, "login", None, None, now())
    if user is None:
        flash("That email and password do not match an account.", "error")
        return render_template("staff/login.html", form=form), 401
    limiter.clear(LOGIN_PER_EMAIL, "staff-login-email", hashed(email))
    session.clear()  # a fresh session: nothing from before the login survives
    session.permanent = True
    login_user(principal)
    return redirect(_safe_next(request.args.get("next")))


@route("/logout", "viewer", methods=["POST"])
def logout() -> Any:
    ActionForm()  # CSRF was checked before the view; the form only documents it
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("staff.login"))


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (an open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/staff/") and (
                not target.startswith("//")):
            return target
    return url_for("staff.dashboard")


def _no_staff() -> bool:
    with runtime().sessions() as db:
        return not accounts.has_staff(db)
