"""Supporters (admins only): find a person by phone number or name, see what we hold,
export it for a subject access request, erase it. Opening, exporting and erasing a
person's data are audited (by supporter id and masked number, never the data itself) by
bot.shell.supporters, which the staff API calls too."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for

from bot.shell import supporters as people
from webhooks.console.access import me, now, route
from webhooks.console.forms import ActionForm, EraseForm
from webhooks.runtime import runtime


@route("/supporters", "admin")
def supporters() -> Any:
    query = request.args.get("q", "").strip()[:100]
    found: list[people.Found] = []
    if query:
        with runtime().sessions() as session:
            found = people.find(session, query)
    return render_template("staff/supporters.html", query=query, found=found,
                           limit=people.LIMIT)


@route("/supporters/<id:supporter_id>", "admin")
def supporter(supporter_id: int) -> Any:
    with runtime().sessions.begin() as session:
        data = people.view(session, supporter_id, me().email, now())
        if data is None:
            abort(404, "No such supporter (they may have been erased).")
    return render_template("staff/supporter.html", p=data, action=ActionForm(),
                           masked=people.masked(data))


@route("/supporters/<id:supporter_id>/export.json", "admin", methods=["POST"])
def export_supporter(supporter_id: int) -> Any:
    """Everything we hold about one person, as a JSON download (a subject access request)."""
    ActionForm()
    with runtime().sessions.begin() as session:
        body = people.export(session, supporter_id, runtime().config.organisation,
                             me().email, now())
        if body is None:
            abort(404, "No such supporter (they may have been erased).")
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="supporter-{supporter_id}.json"'})


@route("/supporters/<id:supporter_id>/erase", "admin", methods=["GET", "POST"])
def erase_supporter(supporter_id: int) -> Any:
    form = EraseForm()
    with runtime().sessions() as session:
        data = people.subject_access(session, supporter_id)
    if data is None:
        abort(404, "No such supporter (they may have been erased).")
    if form.validate_on_submit():
        with runtime().sessions.begin() as session:
            erased = people.erase(session, supporter_id, me().email, now())
            if erased is None:
                abort(404, "No such supporter (they may have been erased).")
        flash(f"Supporter {supporter_id} erased: {erased.signatures} signature(s) withdrawn"
              + (f"; {erased.suppressed} number(s) kept only to honour their STOP."
                 if erased.suppressed else "."), "info")
        return redirect(url_for("staff.supporters"), code=303)
    return render_template("staff/erase.html", p=data, form=form,
                           masked=people.masked(data)), 400 if form.errors else 200
