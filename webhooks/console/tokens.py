"""A staff member's own API tokens (/api/v1): make one (shown once, never again), see when
each was last used, revoke one. A token acts as its maker, with their role."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, url_for

from bot.shell import api_tokens
from bot.shell.staff import StaffError
from models import StaffUser
from webhooks.console.access import me, now, record, route
from webhooks.console.forms import ActionForm, TokenForm
from webhooks.runtime import runtime


@route("/account/tokens", "viewer", methods=["GET", "POST"])
def tokens() -> Any:
    form = TokenForm()
    issued = None
    if form.validate_on_submit():
        with runtime().sessions.begin() as session:
            user = session.get(StaffUser, me().id)
            if user is None:
                abort(403, "Your account no longer exists.")
            try:
                issued = api_tokens.issue(session, user, form.name.data or "", now())
            except StaffError as error:
                abort(403, str(error))
            record(session, "token.create", f"token:{issued.id}", {"name": issued.name})
        form = TokenForm(formdata=None)
    with runtime().sessions() as session:
        rows = api_tokens.tokens_of(session, me().id)
    # Shown in this answer only: never flashed (the session cookie is signed, not secret).
    return render_template("staff/tokens.html", form=form, rows=rows, issued=issued,
                           action=ActionForm()), 400 if form.errors else 200


@route("/account/tokens/<id:token_id>/revoke", "viewer", methods=["POST"])
def revoke_token(token_id: int) -> Any:
    ActionForm()
    with runtime().sessions.begin() as session:
        row = api_tokens.revoke(session, token_id, now(), user_id=me().id)
        if row is not None:
            record(session, "token.revoke", f"token:{token_id}")
    if row is None:  # someone else's is not theirs to revoke, nor to learn of
        flash(f"You have no token {token_id}.", "error")
    else:
        flash(f"Token {token_id} ({row.name}) is revoked: it opens nothing from now on.",
              "info")
    return redirect(url_for("staff.tokens"), code=303)
