"""Imports through the staff API (admins): a suppression list, or signatures collected on
paper, sent as a CSV body. The rules are bot/shell/imports.py's, as for the console and the
command line, and so is the answer: what the import did (201), or would do (`dry_run=true`:
200, nothing changed); 422 with every bad row by its line when any row is bad (nothing is
kept); 409 for a file imported before; 400 naming the field for a body that is no CSV file
with the needed columns, or a parameter that cannot be used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from flask import jsonify, request

from bot.shell import imports
from webhooks.api_v1.auth import caller, now, refuse, refuse_field, route
from webhooks.runtime import runtime

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")
View = TypeVar("View", bound=Callable[..., Any])

_COUNT = {"type": "integer", "minimum": 0}
SCHEMAS: dict[str, dict[str, Any]] = {
    "ImportProblem": {
        "type": "object",
        "description": "A bad row: its line in the file (the column names are line 1; a row "
                       "whose quoted cell spans lines is named by its first), and why.",
        "properties": {"line": {"type": "integer", "minimum": 2},
                       "error": {"type": "string"}},
        "required": ["line", "error"],
        "additionalProperties": False,
    },
    "ImportSummary": {
        "type": "object",
        "description": "What an import did or, for a dry run or a file with bad rows, would "
                       "have done. Counts only: no number or name.",
        "properties": {
            "id": {"type": "integer", "nullable": True,
                   "description": "the import's id once kept; null when nothing was kept"},
            "kind": {"type": "string", "enum": list(imports.KINDS)},
            "petition": {"type": "string", "nullable": True,
                         "description": "the petition's slug (paper signatures)"},
            "filename": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                       "description": "the file's: the same file is imported once"},
            "dry_run": {"type": "boolean"},
            "kept": {"type": "boolean", "description": "whether anything was imported"},
            "rows": {**_COUNT, "description": "data rows in the file (blank lines aside)"},
            "new": {**_COUNT, "description": "numbers added to the suppression list, or "
                                             "paper signatures added"},
            "already": {**_COUNT, "description": "numbers already on the list, or earlier "
                                                 "in the file"},
            "matched": {**_COUNT, "description": "numbers of people we know (a supporter's, "
                        "or an SMS or WhatsApp address), never messaged from now on; for "
                        "paper signatures, rows with the same name and postcode as someone "
                        "who signed with the bot"},
            "bad_rows": {**_COUNT, "description": "rows that cannot be imported; any at all "
                                                  "and nothing is kept"},
            "errors": {"type": "array", "maxItems": imports.MAX_LISTED,
                       "items": {"$ref": "#/components/schemas/ImportProblem"},
                       "description": f"the bad rows (the first {imports.MAX_LISTED:,})"},
            "sources": {"type": "object", "additionalProperties": _COUNT,
                        "description": "paper signatures by where they were collected"},
            "numbers": {"type": "object", "nullable": True,
                        "description": "the numbers the paper signatures were given",
                        "properties": {"first": {"type": "integer"},
                                       "last": {"type": "integer"}},
                        "required": ["first", "last"], "additionalProperties": False},
        },
        "required": ["id", "kind", "petition", "filename", "sha256", "dry_run", "kept",
                     "rows", "new", "already", "matched", "bad_rows", "errors", "sources",
                     "numbers"],
        "additionalProperties": False,
    },
}
SCHEMAS["ImportBadRows"] = {
    **SCHEMAS["ImportSummary"],
    "description": "Some rows are bad: nothing was kept. What the import would have done, "
                   "with the bad rows by line in `errors`.",
    "properties": {"error": {"type": "string", "description": "how many rows are bad"},
                   **SCHEMAS["ImportSummary"]["properties"]},
    "required": ["error", *SCHEMAS["ImportSummary"]["required"]],
}

_ANSWERS = """
      requestBody:
        required: true
        content:
          text/csv:
            schema: {type: string}
      responses:
        200:
          description: A dry run, every row good; nothing changed.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ImportSummary'}
        201:
          description: Imported (audited).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ImportSummary'}
        400:
          description: The body is no UTF-8 CSV file with the needed columns (`field` is
            body), or a parameter cannot be used (`field` names it); nothing changed.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/FieldError'}
        409:
          description: This file was imported before (as this kind, for this petition).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        413:
          description: The body is larger than the largest file taken, or holds more
            paper signatures than one file may (split it).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        422:
          description: Some rows are bad (`errors` lists them by line); nothing was kept.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ImportBadRows'}
"""
_DRY_RUN = """
        - in: query
          name: dry_run
          description: true to be told what the import would do, changing nothing
          schema: {type: boolean, default: false}
        - in: query
          name: filename
          description: the file's name, kept with the import and shown in the console
          schema: {type: string, maxLength: 200}
"""


def _documented(*parts: str) -> Callable[[View], View]:
    """Append the operation's shared parts to its docstring (before `route` copies it)."""

    def decorate(view: View) -> View:
        view.__doc__ = (view.__doc__ or "").rstrip(" ") + "".join(parts)
        return view

    return decorate


@route("/imports/suppressions", "admin", methods=["POST"])
@_documented(_DRY_RUN, _ANSWERS)
def import_suppressions() -> Any:
    """Add numbers to the suppression list: they are never messaged again, on any channel.
    ---
    post:
      summary: Import a suppression list
      description: >-
        A CSV file whose first line names a phone column (phone, number, mobile...; any
        case); other columns are ignored. Each number (UK or international, in any form)
        is never messaged again from the moment of the import: not on SMS or WhatsApp, and
        not on any channel, Telegram included, of the person with that number. Nobody's
        consent, subscriptions or opt-in times change.
      parameters:
        - in: query
          name: source
          description: where the list comes from (default, the file's name)
          schema: {type: string, maxLength: 80}
    """
    return _import(imports.SUPPRESSIONS, None, request.args.get("source"))


@route("/imports/signatures", "admin", methods=["POST"])
@_documented(_DRY_RUN, _ANSWERS, """        404:
          description: No petition has this slug.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
""")
def import_signatures() -> Any:
    """Add signatures collected on paper or at events to a petition.
    ---
    post:
      summary: Import paper signatures
      description: >-
        A CSV file with the columns name, postcode, date (YYYY-MM-DD or DD/MM/YYYY) and
        source (where it was collected). Each row becomes a signature with channel "paper"
        and its source, numbered after the others, on a person of its own who is never
        messaged. A row identical to another, or to a paper signature imported before, is
        a bad row, as are names and postcodes the bot would not take and dates in the
        future or outside the petition's dates.
      parameters:
        - in: query
          name: petition
          required: true
          description: the petition's slug
          schema: {type: string}
    """
    slug = request.args.get("petition")
    if not slug:
        refuse_field("petition", "petition: the slug of the petition the signatures are for")
    return _import(imports.SIGNATURES, slug, None)


def _import(kind: str, petition: str | None, source: str | None) -> Any:
    dry_run = _flag(request.args.get("dry_run", "false"))
    request.max_content_length = imports.MAX_BYTES  # this body may be larger than 64 KiB
    data = request.get_data(cache=False)
    rt = runtime()
    try:
        summary = imports.run(rt.sessions, rt.config, kind, data,
                              filename=request.args.get("filename") or "api.csv",
                              petition=petition, source=source, actor=caller().email,
                              now=now(), dry_run=dry_run)
    except imports.Refused as error:
        _refused(error)
    if summary.bad_rows:
        rows = "row is" if summary.bad_rows == 1 else "rows are"
        return jsonify(error=f"{summary.bad_rows:,} {rows} bad (see errors): nothing was "
                             "imported", **summary.as_dict()), 422
    return jsonify(summary.as_dict()), 200 if dry_run else 201


def _flag(value: str) -> bool:
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    refuse_field("dry_run", "dry_run: true or false")


def _refused(error: imports.Refused) -> NoReturn:
    if error.status == 400:
        refuse_field(error.field or "body", str(error))
    refuse(error.status, str(error))


__all__ = ["import_signatures", "import_suppressions"]
