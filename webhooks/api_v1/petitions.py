"""Petitions' live content and counts (DESIGN §9): read them (viewer), change them (editor).

A change goes through bot.shell.petition_versions, as the console's does: the same rules
as config.toml's, a new version, the audit log in the token's staff member's name, and the
bot using it from the next message. Invalid input is a 400 naming the field, and nothing
changes."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from sqlalchemy.orm import Session

from bot.infra.config import Petition
from bot.shell import petition_versions
from bot.shell.counts import public_counts
from webhooks.api_v1.auth import caller, json_body, now, refuse, refuse_field, route
from webhooks.runtime import runtime

# The API's names for the content's fields (the issue is "text" here).
FIELDS = {"title": "title", "summary": "summary", "text": "issue",
          "decision_makers": "decision_makers", "goal": "goal", "external": "external",
          "closed": "closed"}
API_NAMES = {field: name for name, field in FIELDS.items()}

_DATE = {"type": "string", "format": "date"}
_EXTERNAL = {"type": "array", "items": {"$ref": "#/components/schemas/ExternalCount"}}
_CHANNELS = {"type": "object", "properties": {c: {"type": "integer"} for c in
                                              ("sms", "whatsapp", "telegram", "paper")},
             "required": ["sms", "whatsapp", "telegram"], "additionalProperties": False,
             "description": "paper: signatures collected on paper and imported, present "
                            "once there are any"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "ExternalCount": {
        "type": "object",
        "description": "Signatures collected elsewhere (e.g. Change.org), as last read there.",
        "properties": {"source": {"type": "string"}, "count": {"type": "integer", "minimum": 0},
                       "as_of": {**_DATE, "nullable": True,
                                 "description": "when the count was read"}},
        "required": ["source", "count"],
        "additionalProperties": False,
    },
    "PetitionCounts": {
        "type": "object",
        "description": "The count, as the public JSON gives it.",
        "properties": {
            "total": {"type": "integer"}, "here": {"type": "integer"},
            "external": {"type": "array", "items": {
                "type": "object", "properties": {"source": {"type": "string"},
                                                 "count": {"type": "integer"}},
                "required": ["source", "count"], "additionalProperties": False}},
            "by_channel": _CHANNELS},
        "required": ["total", "here", "external", "by_channel"],
        "additionalProperties": False,
    },
    "PetitionContent": {
        "type": "object",
        "description": "A petition's live content (what the bot says from the next message "
                       "on) and its counts.",
        "properties": {
            "slug": {"type": "string"}, "code": {"type": "string"},
            "title": {"type": "string"}, "summary": {"type": "string"},
            "text": {"type": "string", "description": "the whole issue (MORE)"},
            "decision_makers": {"type": "array", "items": {"type": "string"}},
            "organiser": {"type": "string"}, "created": _DATE,
            "goal": {"type": "integer"}, "share_url": {"type": "string"},
            "external": _EXTERNAL,
            "closed": {"type": "boolean"},
            "closed_on": {**_DATE, "nullable": True, "description": "the day it closed"},
            "version": {"type": "integer", "description": "the live version's number (0: "
                        "config.toml's content, never changed)"},
            "counts": {"$ref": "#/components/schemas/PetitionCounts"},
        },
        "required": ["slug", "title", "summary", "text", "decision_makers", "goal",
                     "external", "closed", "counts"],
        "additionalProperties": False,
    },
    "PetitionChange": {
        "type": "object",
        "description": "Any of these fields; the others stay as they are. Checked by the "
                       "rules config.toml's petitions follow (plain characters for what SMS "
                       "carries, a summary of at most 200 characters, a positive goal...).",
        "properties": {
            "title": {"type": "string"}, "summary": {"type": "string", "maxLength": 200},
            "text": {"type": "string", "description": "the whole issue"},
            "decision_makers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "goal": {"type": "integer", "minimum": 1},
            "external": {**_EXTERNAL, "description": "replaces the whole list"},
            "closed": {"type": "boolean", "description": "true closes it today (a closed "
                       "one keeps its day), false opens it again"},
        },
        "additionalProperties": False,
    },
    "PetitionList": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {
            "type": "object",
            "properties": {"slug": {"type": "string"}, "title": {"type": "string"},
                           "closed": {"type": "boolean"}},
            "required": ["slug", "title", "closed"], "additionalProperties": False}}},
        "required": ["items"],
        "additionalProperties": False,
    },
}


@route("/petitions", "viewer", methods=["GET"])
def petitions() -> Any:
    """Every petition, open and closed, as staff see them in the console.
    ---
    get:
      summary: List petitions
      responses:
        200:
          description: Each petition's slug, title and whether it is closed.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/PetitionList'}
    """
    rt = runtime()
    with rt.sessions() as session:
        found = rt.service.content(session).petitions
    return jsonify({"items": [{"slug": p.slug, "title": p.title, "closed": p.closed is not None}
                              for p in found]})


@route("/petitions/<slug>", "viewer", methods=["GET"])
def petition(slug: str) -> Any:
    """A petition's live content and counts.
    ---
    get:
      summary: Read a petition
      responses:
        200:
          description: The content the bot uses now, and the counts.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/PetitionContent'}
        404:
          description: No petition has this slug.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    with runtime().sessions() as session:
        return jsonify(_body(session, _live(session, slug)))


@route("/petitions/<slug>", "editor", methods=["PATCH"])
def change(slug: str) -> Any:
    """Change a petition's content: the bot uses it from the next message, with no restart.
    ---
    patch:
      summary: Change a petition
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/PetitionChange'}
      responses:
        200:
          description: Saved as the petition's newest version (or nothing to change); the
            petition as it is now.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/PetitionContent'}
        400:
          description: A field that cannot be changed here, or a value that breaks a
            rule (`field` names it), or a body that is not a JSON object; nothing was
            changed.
          content:
            application/json:
              schema:
                oneOf:
                  - {$ref: '#/components/schemas/FieldError'}
                  - {$ref: '#/components/schemas/Error'}
        404:
          description: No petition has this slug.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    rt = runtime()
    body = json_body()
    with rt.sessions.begin() as session:
        _live(session, slug)
        for name in body:
            if name not in FIELDS:
                refuse_field(name, f"{name}: not a field you can change here (you can change "
                               f"{', '.join(FIELDS)})")
        if "closed" in body and not isinstance(body["closed"], bool):
            refuse_field("closed", "closed: true to close the petition, false to open it again")
        try:
            petition_versions.edit(session, rt.config, slug,
                                   {FIELDS[name]: value for name, value in body.items()},
                                   caller().email, now())
        except petition_versions.Invalid as error:
            refuse_field(API_NAMES.get(error.field, error.field), "; ".join(
                f"{_api_path(where)}: {message}" for where, message in error.problems))
    with rt.sessions() as session:
        return jsonify(_body(session, _live(session, slug)))


def _live(session: Session, slug: str) -> Petition:
    try:
        return runtime().service.content(session).petition(slug)
    except KeyError:
        refuse(404, "no such petition")


def _body(session: Session, content: Petition) -> dict[str, Any]:
    counts = public_counts(session, content)
    return {
        "slug": content.slug, "code": content.code, "title": content.title,
        "summary": content.summary, "text": content.issue,
        "decision_makers": list(content.decision_makers), "organiser": content.organiser,
        "created": content.created.isoformat(), "goal": content.goal,
        "share_url": content.share_url,
        "external": [{"source": e.source, "count": e.count,
                      "as_of": e.as_of.isoformat() if e.as_of else None}
                     for e in content.external],
        "closed": content.closed is not None,
        "closed_on": content.closed.isoformat() if content.closed else None,
        "version": petition_versions.version_of(session, runtime().config, content.slug),
        "counts": counts,
    }


def _api_path(where: str) -> str:
    """A problem's field as the API names it ("issue" -> "text")."""
    top = petition_versions.top_field(where)
    return API_NAMES.get(top, top) + where[len(top):]
