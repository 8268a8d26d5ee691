"""Imports (admins): a suppression list, or signatures collected on paper, from a CSV file.

The rules are bot/shell/imports.py's, as for the command line and the API; this page
uploads, shows a check (a dry run: what the import would do, and every bad row by its
line), and lets the admin confirm without choosing the file again. The checked file
travels back in the page itself, compressed, with its SHA-256 and a seal (an HMAC, under
the app's secret, of what was checked: kind, petition, source, name and SHA-256), so what
is imported is exactly what was checked, and nothing of it is kept on the server between
the two steps. Past imports are listed below.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import select
from wtforms import HiddenField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from bot.shell import imports
from models import ImportBatch, Petition
from webhooks.console.access import bp, me, now, route
from webhooks.runtime import runtime

KINDS = [SelectChoice(imports.SUPPRESSIONS, "Suppression list: numbers never to message "
                                            "(column: phone)"),
         SelectChoice(imports.SIGNATURES, "Paper signatures (columns: name, postcode, date, "
                                          "source)")]
# The checked file comes back base64-encoded and compressed: at worst a third larger.
MAX_FORM = imports.MAX_BYTES * 4 // 3 + 64 * 1024
PAST = 50  # past imports listed


class CheckForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file.")],
                     description="UTF-8 CSV (in a spreadsheet: save as \"CSV UTF-8\"), its "
                                 "first line naming the columns; up to "
                                 f"{imports.MAX_BYTES // 2**20} MiB, and "
                                 f"{imports.MAX_PAPER_ROWS:,} paper signatures.",
                     render_kw={"accept": ".csv,text/csv"})
    kind = RadioField("What is in it", choices=KINDS, default=imports.SUPPRESSIONS,
                      validators=[DataRequired()])
    petition = SelectField("Petition (for paper signatures)", validate_choice=False)
    source = StringField("Where the list comes from (for a suppression list)",
                         validators=[Optional(), Length(max=imports.MAX_SOURCE)],
                         description="e.g. Fundraising Preference Service. Empty: the "
                                     "file's name.",
                         render_kw={"maxlength": imports.MAX_SOURCE, "autocomplete": "off"})


class ConfirmForm(FlaskForm):
    """The checked file and what it was checked as, sealed."""

    kind = HiddenField(validators=[DataRequired()])
    petition = HiddenField()
    source = HiddenField()
    filename = HiddenField(validators=[DataRequired(), Length(max=200)])
    sha256 = HiddenField(validators=[DataRequired(), Length(min=64, max=64)])
    content = HiddenField(validators=[DataRequired()])
    seal = HiddenField(validators=[DataRequired(), Length(min=64, max=64)])


@bp.url_value_preprocessor
def _room_for_a_file(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """An import's request may be larger than the app's 64 KiB: set before anything (the
    CSRF check) reads the form."""
    if endpoint == "staff.imports" and request.method == "POST":
        request.max_content_length = MAX_FORM + 64 * 1024
        request.max_form_memory_size = MAX_FORM


@route("/imports", "admin", methods=["GET", "POST"], endpoint="imports")
def imports_page() -> Any:
    form = _check_form()
    confirm = None
    summary = None
    status = 200
    if request.method == "POST" and request.form.get("step") == "confirm":
        confirm = ConfirmForm()
        data = _checked_file(confirm) if confirm.validate_on_submit() else None
        if data is None:
            flash("That check has expired or was changed: choose the file and check it "
                  "again.", "error")
            return redirect(url_for("staff.imports"), code=303)
        summary, status = _run(data, confirm.kind.data or "", confirm.filename.data or "",
                               confirm.petition.data or None, confirm.source.data or None,
                               dry_run=False)
        if summary is not None and summary.kept:
            flash(f"Imported {summary.filename}: " + _done(summary), "info")
            return redirect(url_for("staff.imports"), code=303)
        confirm = None
    elif request.method == "POST":
        if form.validate_on_submit():
            data = form.file.data.read(imports.MAX_BYTES + 1)
            summary, status = _run(data, form.kind.data or "", form.file.data.filename or "",
                                   form.petition.data or None, form.source.data or None,
                                   dry_run=True)
            if summary is not None and not summary.bad_rows:
                confirm = _confirm_form(summary, data, form.source.data or "")
        else:
            status = 400
    return render_template("staff/imports.html", form=form, summary=summary,
                           confirm=confirm, past=_past()), status


def _check_form() -> CheckForm:
    form = CheckForm()
    form.petition.choices = [SelectChoice(p.slug, f"{p.slug}: {p.title}")
                             for p in runtime().service.content().petitions]
    return form


def _run(data: bytes, kind: str, filename: str, petition: str | None, source: str | None,
         dry_run: bool) -> tuple[imports.Summary | None, int]:
    """The import (or its dry run) and the page's status; a refusal is flashed."""
    try:
        summary = imports.run(runtime().sessions, runtime().config, kind, data,
                              filename=filename, petition=petition, source=source,
                              actor=me().email, now=now(), dry_run=dry_run)
    except imports.Refused as error:
        flash(f"{filename or 'The file'}: {error}. Nothing was imported.", "error")
        return None, 400 if error.status < 500 else error.status
    return summary, 400 if summary.bad_rows else 200


def _seal(kind: str, petition: str, source: str, filename: str, sha256: str) -> str:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    checked = "\n".join(["import", kind, petition, source, filename, sha256]).encode()
    return hmac.new(secret, checked, hashlib.sha256).hexdigest()


def _confirm_form(summary: imports.Summary, data: bytes, source: str) -> ConfirmForm:
    form = ConfirmForm(formdata=None)
    form.kind.data, form.petition.data = summary.kind, summary.petition or ""
    form.source.data, form.filename.data = source, summary.filename
    form.sha256.data = summary.sha256
    form.content.data = base64.b64encode(zlib.compress(data, 6)).decode()
    form.seal.data = _seal(summary.kind, form.petition.data, source, summary.filename,
                           summary.sha256)
    return form


def _checked_file(form: ConfirmForm) -> bytes | None:
    """The file as it was checked, or None if anything about it was changed since."""
    expected = _seal(form.kind.data or "", form.petition.data or "", form.source.data or "",
                     form.filename.data or "", form.sha256.data or "")
    if not hmac.compare_digest(expected, form.seal.data or ""):
        return None
    try:
        inflate = zlib.decompressobj()
        data = inflate.decompress(base64.b64decode(form.content.data or "", validate=True),
                                  imports.MAX_BYTES + 1)
    except (binascii.Error, zlib.error, ValueError):
        return None
    if inflate.unconsumed_tail or len(data) > imports.MAX_BYTES:
        return None
    return data if hashlib.sha256(data).hexdigest() == form.sha256.data else None


def _done(summary: imports.Summary) -> str:
    if summary.kind == imports.SUPPRESSIONS:
        return (f"{summary.new:,} number(s) added to the suppression list "
                f"({summary.already:,} were on it already).")
    return (f"{summary.new:,} paper signature(s) added, numbers {summary.first_number:,} to "
            f"{summary.last_number:,}." if summary.new else "no new signature.")


def _past() -> list[tuple[ImportBatch, str | None]]:
    with runtime().sessions() as session:
        rows = session.execute(
            select(ImportBatch, Petition.slug)
            .outerjoin(Petition, Petition.id == ImportBatch.petition_id)
            .order_by(ImportBatch.id.desc()).limit(PAST)).all()
        session.expunge_all()
    return [(batch, slug) for batch, slug in rows]
