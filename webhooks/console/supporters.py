"""Supporters (admins only): find a person by phone number or name, see what we hold,
export it for a subject access request, erase it. Opening, exporting and erasing a
person's data are audited (by supporter id and masked number, never the data itself)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for

from bot.core.phones import mask
from bot.shell import supporters as people
from webhooks.console.access import now, record, route
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
        data = people.subject_access(session, supporter_id)
        if data is None:
            abort(404, "No such supporter (they may have been erased).")
        record(session, "supporter.view", f"supporter:{supporter_id}")
    return render_template("staff/supporter.html", p=data, action=ActionForm(),
                           masked=_masked(data))


@route("/supporters/<id:supporter_id>/export.json", "admin", methods=["POST"])
def export_supporter(supporter_id: int) -> Any:
    """Everything we hold about one person, as a JSON download (a subject access request)."""
    ActionForm()
    with runtime().sessions.begin() as session:
        data = people.subject_access(session, supporter_id)
        if data is None:
            abort(404, "No such supporter (they may have been erased).")
        record(session, "supporter.export", f"supporter:{supporter_id}",
               {"phone": _masked(data)})
    org = runtime().config.organisation
    body = json.dumps({"controller": org.name, "contact": org.contact,
                       "generated_at": now().isoformat(), **data},
                      ensure_ascii=False, indent=2)
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
            erased = people.erase(session, supporter_id)
            if erased is None:
                abort(404, "No such supporter (they may have been erased).")
            record(session, "supporter.erase", f"supporter:{supporter_id}",
                   {"phone": erased.phone, "signatures": erased.signatures,
                    "suppression_kept": erased.suppressed})
        flash(f"Supporter {supporter_id} erased: {erased.signatures} signature(s) withdrawn"
              + (f"; {erased.suppressed} number(s) kept only to honour their STOP."
                 if erased.suppressed else "."), "info")
        return redirect(url_for("staff.supporters"), code=303)
    return render_template("staff/erase.html", p=data, form=form, masked=_masked(data)), (
        400 if form.errors else 200)


def _masked(data: dict[str, Any]) -> str:
    phone = data["supporter"]["phone"]
    return mask(phone) if phone else f"supporter {data['supporter']['id']}"
