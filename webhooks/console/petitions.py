"""Petitions: the list (viewer), create, edit, close and reopen (editor), every version
with who changed what (viewer), and restoring one (editor).

The edit page previews the content as each channel will show it (bot.shell.
petition_preview): a "Preview" button without JavaScript, and as staff type with it
(petition.js asks /petitions/preview for the same fragment). The rules and the saving are
bot.shell.petition_versions', as the staff API's are: this module parses and renders."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import FieldList, Form, FormField, HiddenField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from bot.infra.config import SUMMARY_LIMIT, Config, Petition
from bot.shell import petition_versions
from bot.shell.petition_content import content_of
from bot.shell.petition_preview import preview
from webhooks.console.access import me, now, route
from webhooks.console.forms import ActionForm
from webhooks.runtime import runtime

WHOLE = re.compile(r"^\d{1,3}(,\d{3})+$|^\d+$")  # 100000 or 100,000
MILESTONES = re.compile(r"[\s;]+|,\s+")  # "50,000, 75,000": the numbers' own commas stay
MAX_ROWS = 20  # counts collected elsewhere
LABELS = {"slug": "Slug", "code": "Code", "title": "Title", "summary": "Summary",
          "issue": "The whole issue", "decision_makers": "Decision makers",
          "organiser": "Organiser", "created": "Created on", "goal": "Goal",
          "milestones": "Milestones", "share_url": "Share link",
          "external": "Counts collected elsewhere", "closed": "Closed on",
          "version": "Version"}


class ExternalRow(Form):
    """A count collected elsewhere (no CSRF token of its own: the page's form has it)."""

    source = StringField("Where", validators=[Optional(), Length(max=80)],
                         render_kw={"autocomplete": "off", "placeholder": "Change.org"})
    count = StringField("Signatures there", validators=[Optional(), Length(max=16)],
                        render_kw={"inputmode": "numeric", "autocomplete": "off"})
    as_of = StringField("As of", validators=[Optional(), Length(max=10)],
                        render_kw={"type": "date"})


class PetitionForm(FlaskForm):
    slug = StringField("Slug", validators=[Optional(), Length(max=41)],
                       description="Its name in links and exports, e.g. fund-scans: small "
                                   "letters, digits and dashes. It cannot change later.",
                       render_kw={"autocomplete": "off"})
    code = StringField("Code", validators=[Optional(), Length(max=16)],
                       description="What supporters text to sign it, e.g. SIGN SCANS: capital "
                                   "letters and digits. Empty: the slug in capitals.",
                       render_kw={"autocomplete": "off"})
    title = StringField("Title", validators=[Length(max=300)])
    summary = TextAreaField("Summary", validators=[Length(max=2000)],
                            description=f"At most {SUMMARY_LIMIT} characters: it opens every "
                                        "chat.",
                            render_kw={"rows": 3})
    issue = TextAreaField("The whole issue", validators=[Length(max=20000)],
                          description="What supporters read page by page when they send MORE.",
                          render_kw={"rows": 14})
    decision_makers = TextAreaField("Decision makers", validators=[Length(max=2000)],
                                    description="Who the petition asks: one a line.",
                                    render_kw={"rows": 2})
    organiser = StringField("Organiser", validators=[Length(max=300)])
    created = StringField("Created on", validators=[Length(max=10)],
                          render_kw={"type": "date"})
    goal = StringField("Goal", validators=[Length(max=16)],
                       description="The total to reach, all sources together.",
                       render_kw={"inputmode": "numeric"})
    milestones = StringField("Milestones", validators=[Length(max=200)],
                             description="Totals that each make a draft thank-you announcement, "
                                         "e.g. 50,000, 75,000.")
    share_url = StringField("Share link", validators=[Length(max=500)],
                            description="The web page supporters are asked to share.")
    external = FieldList(FormField(ExternalRow), label="Counts collected elsewhere",
                         min_entries=1, max_entries=MAX_ROWS)
    closed = StringField("Closed on", validators=[Length(max=10)],
                         description="Empty while the petition is open.",
                         render_kw={"type": "date"})
    version = HiddenField()  # the version the page showed: a save on an older one is stopped
    editing = HiddenField()  # the slug being edited, for the preview ("" for a new one)


@route("/petitions", "viewer")
def petitions() -> Any:
    rt = runtime()
    with rt.sessions() as session:
        live = rt.service.content(session).petitions
        here = rt.service.counts(session, fresh=True)
        versions = {p.slug: petition_versions.version_of(session, rt.config, p.slug)
                    for p in live}
    return render_template("staff/petitions.html", petitions=live, counted=here,
                           versions=versions, action=ActionForm())


@route("/petitions/new", "editor", methods=["GET", "POST"])
def new_petition() -> Any:
    if request.method == "GET":
        form = PetitionForm(formdata=None, data={"organiser": runtime().config.organisation.name,
                                                 "created": now().date().isoformat(),
                                                 "goal": "10,000"})
        _spare_row(form)
        return _page(form, None, None, [])
    form = PetitionForm()
    fields, problems = _fields(form, new=True)
    petition, found, shown = _proposal(None, fields)
    if problems or found or request.form.get("press") == "preview":
        return _page(form, None, shown, problems + found)
    rt = runtime()
    try:
        with rt.sessions.begin() as session:
            petition_versions.create(session, rt.config, fields, me().email, now())
    except petition_versions.Invalid as error:  # e.g. someone took the slug just now
        return _page(form, None, shown, list(error.problems))
    flash(f"“{petition.title}” is created. Supporters reach it with SIGN {petition.code}, "
          "from the next message.", "info")
    return redirect(url_for("staff.edit_petition", slug=petition.slug), code=303)


@route("/petitions/<slug>/edit", "editor", methods=["GET", "POST"])
def edit_petition(slug: str) -> Any:
    rt = runtime()
    with rt.sessions() as session:
        current = _petition(session, slug)
        version = petition_versions.version_of(session, rt.config, slug)
        shown: dict[str, Any] | None = _shown(session, current)
    if request.method == "GET":
        form = PetitionForm(formdata=None, data=_form_data(current, version))
        _spare_row(form)
        return _page(form, current, shown, [])
    form = PetitionForm()
    changes, problems = _fields(form, new=False)
    _, found, shown = _proposal(slug, changes)
    if problems or found or request.form.get("press") == "preview":
        return _page(form, current, shown, problems + found)
    try:
        with rt.sessions.begin() as session:
            petition_versions.edit(session, rt.config, slug, changes, me().email, now(),
                                   based_on=_number(form.version.data))
            saved = petition_versions.version_of(session, rt.config, slug)
    except petition_versions.Invalid as error:
        return _page(form, current, shown, list(error.problems))
    except petition_versions.Stale:
        with rt.sessions() as session:
            newest = petition_versions.version_of(session, rt.config, slug)
        form.version.data = str(newest)
        return _page(form, current, shown, [(
            "version", f"Someone saved version {newest} while you were editing, so yours "
                       "was not saved. Check the history, then save again to replace theirs "
                       "with what is on this page.")])
    if saved == version:
        flash("Nothing had changed, so nothing was saved.", "info")
    else:
        flash(f"Saved as version {saved}. The bot uses it from the next message.", "info")
    return redirect(url_for("staff.edit_petition", slug=slug), code=303)


@route("/petitions/preview", "editor", methods=["POST"])
def petition_preview() -> Any:
    """The preview fragment for the form as it is now (petition.js asks as staff type)."""
    form = PetitionForm()
    editing = form.editing.data or None
    fields, problems = _fields(form, new=editing is None)
    _, found, shown = _proposal(editing, fields)
    return render_template("staff/petition_preview.html", shown=shown,
                           problems=_described(problems + found))


@route("/petitions/<slug>/close", "editor", methods=["POST"])
def close_petition(slug: str) -> Any:
    petition = _open_or_close(slug, petition_versions.close)
    assert petition.closed is not None
    flash(f"“{petition.title}” is closed as of {petition.closed:%-d %B %Y}.", "info")
    return _back(slug)


@route("/petitions/<slug>/reopen", "editor", methods=["POST"])
def reopen_petition(slug: str) -> Any:
    petition = _open_or_close(slug, petition_versions.reopen)
    flash(f"“{petition.title}” is open again.", "info")
    return _back(slug)


@route("/petitions/<slug>/history", "viewer")
def petition_history(slug: str) -> Any:
    rt = runtime()
    with rt.sessions() as session:
        current = _petition(session, slug)
        versions = petition_versions.versions(session, rt.config, slug)
    return render_template("staff/petition_history.html", petition=current,
                           versions=versions, labels=LABELS, action=ActionForm())


@route("/petitions/<slug>/versions/<id:number>/restore", "editor", methods=["POST"])
def restore_petition(slug: str, number: int) -> Any:
    ActionForm()
    rt = runtime()
    try:
        with rt.sessions.begin() as session:
            petition_versions.restore(session, rt.config, slug, number, me().email, now())
            saved = petition_versions.version_of(session, rt.config, slug)
    except KeyError:
        abort(404, "No such petition.")
    except petition_versions.Invalid as error:
        for where, message in _described(error.problems):
            flash(f"Version {number} cannot be restored: {where}: {message}", "error")
        return redirect(url_for("staff.petition_history", slug=slug), code=303)
    flash(f"Version {number} is live again, saved as version {saved}.", "info")
    return redirect(url_for("staff.petition_history", slug=slug), code=303)


# Parsing and rendering ----------------------------------------------------------------------

def _open_or_close(slug: str, change: Callable[[Session, Config, str, str, dt.datetime],
                                                Petition]) -> Petition:
    """Close or reopen the petition (petition_versions.close or .reopen) in the signed-in
    staff member's name; 404 when there is no such petition."""
    ActionForm()
    rt = runtime()
    with rt.sessions.begin() as session:
        try:
            return change(session, rt.config, slug, me().email, now())
        except KeyError:
            abort(404, "No such petition.")


def _back(slug: str) -> Any:
    """To the page the button was on: the list, or the petition's own."""
    if request.form.get("back") == "list":
        return redirect(url_for("staff.petitions"), code=303)
    return redirect(url_for("staff.edit_petition", slug=slug), code=303)


def _petition(session: Session, slug: str) -> Petition:
    try:
        return runtime().service.content(session).petition(slug)
    except KeyError:
        abort(404, "No such petition.")


def _form_data(petition: Petition, version: int) -> dict[str, Any]:
    content = content_of(petition)
    return {**content, "decision_makers": "\n".join(petition.decision_makers),
            "goal": f"{petition.goal:,}",
            "milestones": ", ".join(f"{m:,}" for m in petition.milestones),
            "external": [{"source": e["source"], "count": f"{e['count']:,}",
                          "as_of": e.get("as_of", "")} for e in content["external"]],
            "closed": content.get("closed", ""), "version": str(version),
            "editing": petition.slug}


def _spare_row(form: PetitionForm) -> None:
    """An empty row, to add a count collected somewhere else."""
    if len(form.external.entries) < MAX_ROWS:
        form.external.append_entry()


def _fields(form: PetitionForm, new: bool) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The form's text as the petition's fields (config.toml's shapes), and what could not
    be read as a number; the rules themselves are the shell's."""
    form.validate()  # lengths only (CSRFProtect checked the token); the rules are the shell's
    problems: list[tuple[str, str]] = [(name, " ".join(map(str, errors)))
                                       for name, errors in form.errors.items()
                                       if name not in ("external", "csrf_token")]
    fields: dict[str, Any] = {
        "title": _text(form.title.data), "summary": _text(form.summary.data),
        "issue": _text(form.issue.data).replace("\r\n", "\n"),
        "decision_makers": [line.strip() for line in (form.decision_makers.data or "")
                            .splitlines() if line.strip()],
        "organiser": _text(form.organiser.data), "created": _text(form.created.data) or None,
        "share_url": _text(form.share_url.data), "closed": _text(form.closed.data) or None,
    }
    if new:
        fields["slug"] = _text(form.slug.data)
        if _text(form.code.data):
            fields["code"] = _text(form.code.data).upper()
    goal = _number(form.goal.data)
    if goal is None:
        problems.append(("goal", "a whole number, like 100,000"))
    else:
        fields["goal"] = goal
    milestones = [_number(m) for m in MILESTONES.split(form.milestones.data or "")
                  if m.strip(",")]
    if None in milestones:
        problems.append(("milestones", "whole numbers, each after a comma and a space, "
                                       "like 50,000, 75,000"))
    else:
        fields["milestones"] = milestones
    external, row_problems = _external(form)
    problems += row_problems
    if not row_problems:
        fields["external"] = external
    return fields, problems


def _external(form: PetitionForm) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    rows, problems = [], []
    for i, entry in enumerate(form.external.entries):
        source, raw = _text(entry.source.data), _text(entry.count.data)
        if not source and not raw:
            continue  # an empty row: nothing, or a count taken away
        count = _number(raw)
        if count is None:
            problems.append((f"external[{i}].count", "a whole number, like 49,257"))
            continue
        rows.append({"source": source, "count": count,
                     "as_of": _text(entry.as_of.data) or None})
    return rows, problems


def _number(text: str | None) -> int | None:
    cleaned = (text or "").strip()
    return int(cleaned.replace(",", "")) if WHOLE.match(cleaned) else None


def _text(value: str | None) -> str:
    return (value or "").strip()


def _described(problems: list[tuple[str, str]] | tuple[tuple[str, str], ...],
               ) -> list[tuple[str, str]]:
    """Problems in words: ("external[0].count", ...) -> ("Counts collected elsewhere, row 1,
    count", ...)."""
    described = []
    for where, message in problems:
        top = petition_versions.top_field(where)
        label = LABELS.get(top, top)
        row = re.match(r"^\w+\[(\d+)\](?:\.(\w+))?", where)
        if row:
            label += f", row {int(row.group(1)) + 1}" + (f", {row.group(2).replace('_', ' ')}"
                                                        if row.group(2) else "")
        described.append((label, message))
    return described


def _proposal(slug: str | None, fields: dict[str, Any],
              ) -> tuple[Petition, list[tuple[str, str]], dict[str, Any] | None]:
    """The petition as the form would make it, its problems and, when it has none, its
    preview (nothing is saved; the page is rendered after this session, which on SQLite
    holds the lock)."""
    rt = runtime()
    with rt.sessions() as session:
        try:
            petition, problems = petition_versions.proposed(session, rt.config, slug, fields,
                                                            now())
        except KeyError:
            abort(404, "No such petition.")
        return petition, problems, None if problems else _shown(session, petition)


def _shown(session: Session, petition: Petition) -> dict[str, Any]:
    service = runtime().service
    here = service.counts(session).get(petition.slug, 0)
    return {channel.value: shown for channel, shown in preview(
        petition, here, service.content(session).texts, service.common, now()).items()}


def _page(form: PetitionForm, current: Petition | None, shown: dict[str, Any] | None,
          problems: list[tuple[str, str]]) -> Any:
    for where, message in problems:
        field = getattr(form, petition_versions.top_field(where), None)
        if field is not None and petition_versions.top_field(where) != "external":
            field.errors = [*field.errors, message]
    status = 400 if problems else 200
    return render_template("staff/petition_edit.html", form=form, petition=current,
                           shown=shown, problems=_described(problems),
                           row_problems=[p for p in _described(problems)
                                         if p[0].startswith(LABELS["external"])],
                           action=ActionForm()), status
