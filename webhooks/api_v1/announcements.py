"""Announcements through the staff API (DESIGN §9): draft (editor), edit a draft (editor),
approve (admin), read with the reasons it is not moving (viewer).

The rules are bot.shell.broadcast's, as in the console: nobody approves what they wrote or
last edited (403 with the reason), only a draft is edited or approved (409), a field it
cannot send is a 400 naming the field. Approving during quiet hours is not refused: the
answer says when sending starts and carries the warning. Every change is audited in the
token's staff member's name, as the console does.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any, NoReturn

from flask import jsonify, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.core.conversation import Channel
from bot.core.inputs import storable
from bot.core.postcodes import Nation
from bot.shell import announcement_status, broadcast
from bot.shell.staff import audit
from models import Announcement, Petition
from webhooks.api_v1.auth import caller, json_body, now, refuse, route
from webhooks.runtime import runtime

# A row id: 1 to the largest BIGINT, so a longer number is a 404, not a database overflow.
ANNOUNCEMENT = f"<int(min=1, max={2**63 - 1}):announcement_id>"
AUDIENCE = ("channels", "nations", "postcode_areas")
EDITABLE = ("text", *AUDIENCE, "whatsapp_template")
MAX_LIMIT = 200
STATUSES = ("draft", "approved", "scheduled", "sending", "paused", "sent", "cancelled")
STATES = ("pending", "sending", "sent", "delivered", "failed", "skipped", "unknown")

_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {**_TIME, "nullable": True}
_MAYBE_NAME = {"type": "string", "nullable": True}
_CHANNEL = {"type": "string", "enum": [c.value for c in Channel]}
_AUDIENCE_PROPERTIES: dict[str, Any] = {
    "channels": {"type": "array", "items": _CHANNEL,
                 "description": "only these channels; empty: every channel"},
    "nations": {"type": "array", "items": {"type": "string", "enum": [n.value for n in Nation]},
                "description": "only signers in these nations; empty: everywhere"},
    "postcode_areas": {"type": "array",
                       "items": {"type": "string", "pattern": "^[A-Za-z]{1,4}$"},
                       "description": "only signers in these postcode areas (EH, G...); "
                                      "empty: everywhere"},
    "whatsapp_template": {"type": "string", "nullable": True,
                          "pattern": broadcast.TEMPLATE_SID.pattern,
                          "description": "the Content SID of an approved WhatsApp template, "
                                         "sent to those outside WhatsApp's 24-hour window; "
                                         "without one they are skipped"},
}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 1200,
         "description": "the message; the charity's name and how to stop are added where "
                        "missing"}
_SUMMARY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "petition": {"type": "string", "description": "the petition's slug"},
    "status": {"type": "string", "enum": list(STATUSES)},
    "text": {"type": "string"},
    **{name: {**schema, "nullable": True} if name == "whatsapp_template" else schema
       for name, schema in _AUDIENCE_PROPERTIES.items()},
    "created_by": {"type": "string"}, "created_at": _TIME,
    "edited_by": {**_MAYBE_NAME, "description": "who last changed its text or audience"},
    "approved_by": _MAYBE_NAME, "approved_at": _MAYBE_TIME,
    "scheduled_at": _MAYBE_TIME, "started_at": _MAYBE_TIME, "finished_at": _MAYBE_TIME,
    "cancelled_by": _MAYBE_NAME,
    "counts": {"$ref": "#/components/schemas/DeliveryCounts"},
    "total": {"type": "integer", "description": "deliveries in all"},
}
_FULL_PROPERTIES: dict[str, Any] = {
    **_SUMMARY_PROPERTIES,
    "moving": {"type": "boolean", "description": "sending, with nothing holding it back"},
    "explanations": {"type": "array", "items": {"$ref": "#/components/schemas/Explanation"},
                     "description": "what holds it back (kind hold), then why some "
                                    "recipients did not get it (kind outcome)"},
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "DeliveryCounts": {
        "type": "object",
        "description": "The announcement's deliveries by state (DESIGN §7).",
        "properties": {state: {"type": "integer", "minimum": 0} for state in STATES},
        "required": list(STATES),
        "additionalProperties": False,
    },
    "Explanation": {
        "type": "object",
        "description": "One reason, in words for staff, with a code for programs.",
        "properties": {
            "code": {"type": "string", "description": (
                "quiet_hours, no_worker, no_sms_sender, no_whatsapp_sender, "
                "no_telegram_bot, no_twilio_credentials, whatsapp_window, paused, scheduled, "
                "awaiting_approval, awaiting_second_approval; outcomes: provider_refused, "
                "skipped_by_us")},
            "kind": {"type": "string", "enum": [announcement_status.HOLD,
                                                announcement_status.OUTCOME]},
            "text": {"type": "string"},
            "short": {"type": "string", "description": "a few words, for a list"},
            "count": {"type": "integer", "description": "recipients or messages concerned"},
            "channel": _CHANNEL,
            "until": {**_TIME, "description": "when it ends (quiet hours) or is due "
                                              "(scheduled)"},
            "error_code": {"type": "string", "description": (
                "the provider's code (Twilio 30007, Telegram 403...) or the product's own "
                "skip reason (opted_out, unreachable, frequency_cap, cancelled, "
                "worker_lost)")},
            "state": {"type": "string", "enum": ["failed", "skipped", "unknown"]},
        },
        "required": ["code", "kind", "text", "short"],
        "additionalProperties": False,
    },
    "AnnouncementSummary": {
        "type": "object",
        "properties": _SUMMARY_PROPERTIES,
        "required": list(_SUMMARY_PROPERTIES),
        "additionalProperties": False,
    },
    "Announcement": {
        "type": "object",
        "description": "An announcement, its deliveries by state, and in words why it is "
                       "not moving when it is not.",
        "properties": _FULL_PROPERTIES,
        "required": list(_FULL_PROPERTIES),
        "additionalProperties": False,
    },
    "AnnouncementList": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {
            "$ref": "#/components/schemas/AnnouncementSummary"}}},
        "required": ["items"],
        "additionalProperties": False,
    },
    "NewAnnouncement": {
        "type": "object",
        "properties": {"petition": {"type": "string", "description": "the petition's slug"},
                       "text": _TEXT, **_AUDIENCE_PROPERTIES},
        "required": ["petition", "text"],
        "additionalProperties": False,
    },
    "AnnouncementChanges": {
        "type": "object",
        "description": "Any of a draft's text and audience; what is left out stays as it is.",
        "properties": {"text": _TEXT, **_AUDIENCE_PROPERTIES},
        "additionalProperties": False,
    },
    "Approval": {
        "type": "object",
        "properties": {
            "at": {**_MAYBE_TIME, "description": "send at this time (without an offset: the "
                                                 "campaign's local time); left out: now"},
            "seen": {"type": "string", "description": "refuse it if the draft changed since "
                                                      "this version (the console's digest)"},
        },
        "additionalProperties": False,
    },
    "Approved": {
        "type": "object",
        "description": "The approved announcement, and when it starts sending.",
        "properties": {
            **_FULL_PROPERTIES,
            "queued": {"type": "integer", "description": "recipients queued now (0 when "
                                                         "scheduled)"},
            "starts_at": {**_TIME, "description": "when sending starts: now, its time, or the "
                                                  "end of the quiet hours that hold it"},
            "warnings": {"type": "array", "items": {"$ref": "#/components/schemas/Explanation"},
                         "description": "quiet hours that hold it back"},
        },
        "required": [*_FULL_PROPERTIES, "queued", "starts_at", "warnings"],
        "additionalProperties": False,
    },
}


# Views -----------------------------------------------------------------------------------

@route("/announcements", "viewer", methods=["GET"])
def announcements() -> Any:
    """The latest announcements, newest first, with their deliveries by state.
    ---
    get:
      summary: List announcements
      parameters:
        - in: query
          name: petition
          schema: {type: string}
          description: only this petition's (its slug)
        - in: query
          name: status
          schema:
            type: string
            enum: [draft, approved, scheduled, sending, paused, sent, cancelled]
        - in: query
          name: limit
          schema: {type: integer, minimum: 1, maximum: 200, default: 50}
      responses:
        200:
          description: The announcements.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/AnnouncementList'}
        400:
          description: A status or limit out of range.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        refuse(400, f"status: one of {', '.join(STATUSES)}")
    limit = request.args.get("limit", 50, type=int)
    if not 1 <= limit <= MAX_LIMIT:
        refuse(400, f"limit: 1 to {MAX_LIMIT}")
    query = (select(Announcement, Petition.slug)
             .join(Petition, Petition.id == Announcement.petition_id)
             .order_by(Announcement.id.desc()).limit(limit))
    if status is not None:
        query = query.where(Announcement.status == status)
    if "petition" in request.args:
        # (A NUL, which PostgreSQL refuses even here, was refused in webhooks/guards.py.)
        query = query.where(Petition.slug == request.args["petition"])
    with runtime().sessions() as session:
        rows = session.execute(query).all()
        counts = broadcast.delivery_counts(session, [a.id for a, _ in rows])
    return jsonify({"items": [{**_described(a, slug), **_tally(counts.get(a.id, {}))}
                              for a, slug in rows]})


@route("/announcements", "editor", methods=["POST"])
def create() -> Any:
    """Write a draft announcement; an admin other than its author approves it.
    ---
    post:
      summary: Draft an announcement
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewAnnouncement'}
      responses:
        201:
          description: The draft, with whom it would reach and anything to know before it
            goes out.
          headers:
            Location:
              description: the draft's URL
              schema: {type: string}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Announcement'}
        400:
          description: Not a JSON object, or a field it cannot take (named), such as an
            unknown petition or channel; nothing was saved.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    body = json_body()
    _only(body, ("petition", *EDITABLE))
    slug = body.get("petition")
    if not isinstance(slug, str) or not slug.strip():
        refuse(400, "petition: give the petition's slug")
    _storable("petition", slug)
    text = _text(body)
    rt = runtime()
    with rt.sessions.begin() as session:
        try:
            draft = broadcast.create(session, rt.config, slug.strip(), text, caller().email,
                                     _audience(body), now=now(),
                                     content_sid=_template(body))
        except broadcast.BroadcastError as error:
            _refuse_for(error)
        _audit(session, "announcement.create", draft)
        shown = _shown(session, draft)
    response = jsonify(shown)
    response.status_code = 201
    response.headers["Location"] = url_for("api_v1.announcement",
                                           announcement_id=shown["id"])
    return response


@route(f"/announcements/{ANNOUNCEMENT}", "viewer", methods=["GET"])
def announcement(announcement_id: int) -> Any:
    """An announcement: its status, its deliveries by state, and in words why it is not
    moving when it is not.
    ---
    get:
      summary: Read an announcement and why it is where it is
      responses:
        200:
          description: The announcement with its explanations.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Announcement'}
        404:
          description: No such announcement.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    with runtime().sessions() as session:
        return jsonify(_shown(session, _get(session, announcement_id)))


@route(f"/announcements/{ANNOUNCEMENT}", "editor", methods=["PATCH"])
def edit(announcement_id: int) -> Any:
    """Change a draft's text or audience; whoever changes it may not approve it.
    ---
    patch:
      summary: Edit a draft
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/AnnouncementChanges'}
      responses:
        200:
          description: The draft as it now is.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Announcement'}
        400:
          description: Not a JSON object, or a field it cannot take (named); nothing was
            changed.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        404:
          description: No such announcement.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        409:
          description: It is no longer a draft; nothing was changed.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    body = json_body()
    _only(body, EDITABLE)
    rt = runtime()
    with rt.sessions.begin() as session:
        draft = _get(session, announcement_id, lock=True)
        current = {"text": draft.text, "channels": draft.channels, "nations": draft.nations,
                   "postcode_areas": draft.postcode_areas,
                   "whatsapp_template": draft.whatsapp_content_sid}
        merged = {**current, **body}
        try:
            # broadcast.edit records who changed it: they may not approve it now.
            changed = broadcast.edit(session, draft, _text(merged), _audience(merged),
                                     caller().email, _template(merged))
        except broadcast.BroadcastError as error:  # raised inside: nothing is committed
            _refuse_for(error)
        if changed:
            _audit(session, "announcement.edit", draft)
        shown = _shown(session, draft)
    return jsonify(shown)


@route(f"/announcements/{ANNOUNCEMENT}/approve", "admin", methods=["POST"])
def approve(announcement_id: int) -> Any:
    """Approve a draft: it is sent now, or at `at`; during quiet hours the answer says when
    it starts.
    ---
    post:
      summary: Approve an announcement
      requestBody:
        required: false
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Approval'}
      responses:
        200:
          description: Approved; queued now, or scheduled. `warnings` says when quiet hours
            hold it and `starts_at` when it starts.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Approved'}
        400:
          description: A body that is not a JSON object, or an `at` that is not a future
            date and time; nothing was approved.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        403:
          description: The token's staff member wrote or last edited it (another admin
            must approve it), or is not an admin.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        404:
          description: No such announcement.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        409:
          description: Not a draft, or changed since the version `seen`; nothing was
            approved.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    body = json_body() if request.get_data() else {}
    _only(body, ("at", "seen"))
    seen = body.get("seen")
    if seen is not None and not isinstance(seen, str):
        refuse(400, "seen: the version's digest, a string")
    rt = runtime()
    at = _time(body.get("at"), rt.config.broadcast.timezone)
    start = announcement_status.approval_start(now(), rt.config, at)
    with rt.sessions.begin() as session:
        found = _get(session, announcement_id, lock=True)
        try:  # the console's rule: not its author nor its last editor
            queued = broadcast.approve(session, rt.config, found, caller().email, now(),
                                       at=at, seen=seen)
        except broadcast.BroadcastError as error:
            _refuse_for(error)
        _audit(session, "announcement.approve", found,
               scheduled_at=at.isoformat() if at else None, queued=queued)
        shown = _shown(session, found)
    warnings = [start.warning.as_dict()] if start.warning else []
    return jsonify({**shown, "queued": queued, "starts_at": start.at.isoformat(),
                    "warnings": warnings})


# Reading the body --------------------------------------------------------------------------

def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        refuse(400, f"{unknown[0]}: not a field here (use {', '.join(allowed)})")


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str):
        refuse(400, "text: write the announcement's text")
    return _storable("text", text)


def _storable(name: str, value: str) -> str:
    """`value`, or a 400 if it holds what no database can (PostgreSQL refuses a NUL even in
    a WHERE clause): found by the API's fuzz test as a 500."""
    if storable(value) != value:
        refuse(400, f"{name}: holds characters that cannot be stored (a NUL, a lone "
                    "surrogate...); remove them")
    return value


def _strings(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        refuse(400, f"{name}: a list of strings")
    return tuple(_storable(name, v) for v in value)


def _audience(body: dict[str, Any]) -> broadcast.Audience:
    return broadcast.Audience(channels=_strings(body, "channels"),
                              nations=_strings(body, "nations"),
                              postcode_areas=_strings(body, "postcode_areas"))


def _template(body: dict[str, Any]) -> str | None:
    sid = body.get("whatsapp_template")
    if sid is not None and not isinstance(sid, str):
        refuse(400, "whatsapp_template: a Content SID (HX and 32 hexadecimal digits) or null")
    return sid or None


def _time(value: Any, timezone: str) -> dt.datetime | None:
    """`at` as UTC: an ISO 8601 time, in the campaign's zone when it names none."""
    if value is None:
        return None
    try:
        at = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None:
        refuse(400, "at: a date and time such as 2026-12-07T09:00:00+00:00")
    if at.tzinfo is None:
        at = at.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    at = at.astimezone(dt.UTC)
    if at <= now():
        refuse(400, "at: that time has passed; give a future time, or leave it out to send "
                    "now")
    return at


def _refuse_for(error: broadcast.BroadcastError) -> NoReturn:
    """A field at fault: 400 naming it; the person: 403; the announcement's state: 409."""
    if isinstance(error, broadcast.ApprovalRefused):
        refuse(403, str(error))
    if error.field:
        refuse(400, f"{error.field}: {error}")
    refuse(409, str(error))


# Reading and showing announcements ---------------------------------------------------------

def _get(session: Session, announcement_id: int, lock: bool = False) -> Announcement:
    found = broadcast.find(session, announcement_id, lock)
    if found is None:
        refuse(404, "no such announcement")
    return found


def _described(a: Announcement, slug: str) -> dict[str, Any]:
    def at(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": a.id, "petition": slug, "status": a.status, "text": a.text,
        "channels": list(a.channels), "nations": list(a.nations),
        "postcode_areas": list(a.postcode_areas), "whatsapp_template": a.whatsapp_content_sid,
        "created_by": a.created_by, "created_at": at(a.created_at), "edited_by": a.edited_by,
        "approved_by": a.approved_by, "approved_at": at(a.approved_at),
        "scheduled_at": at(a.scheduled_at), "started_at": at(a.started_at),
        "finished_at": at(a.finished_at), "cancelled_by": a.cancelled_by,
    }


def _shown(session: Session, a: Announcement) -> dict[str, Any]:
    """The announcement with its deliveries by state and its explanations."""
    rt = runtime()
    slug = session.scalar(select(Petition.slug).where(Petition.id == a.petition_id)) or ""
    status = announcement_status.status_of(session, a, now(), rt.config, rt.settings)
    return {**_described(a, slug), **status.as_dict()}


def _tally(found: dict[str, int]) -> dict[str, Any]:
    """Deliveries by the states of DESIGN §7 (a `claimed` one is still pending)."""
    counts = {state: found.get(state, 0) for state in STATES}
    counts["pending"] += found.get("claimed", 0)
    return {"counts": counts, "total": sum(counts.values())}


def _audit(session: Session, action: str, a: Announcement, **more: Any) -> None:
    """In the token's staff member's name, as the console records its own."""
    audit(session, caller().email, action, f"announcement:{a.id}", {
        "via": "api", "channels": a.channels, "nations": a.nations,
        "areas": a.postcode_areas, "template": a.whatsapp_content_sid,
        "length": len(a.text), **more}, now())
