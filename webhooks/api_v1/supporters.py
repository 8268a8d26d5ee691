"""Supporters (DESIGN §9, admins only: it is personal data): find a person by phone number,
export what we hold about them (a subject access request), erase them.

Each goes through bot.shell.supporters, as the console's supporter pages do, so the rules
and the audit entries are the console's, in the token's staff member's name: opening a
person is `supporter.view`, the export `supporter.export`, erasure `supporter.erase`.

Erasure is `POST /supporters/<id>/erase` with `{"confirm": "erase"}`, not a DELETE: like
§9's `approve` and `close` it is an action with consequences beyond one resource
(signatures withdrawn, counts lowered, a number that said STOP kept as suppression), and
the confirmation it needs is a body, which a DELETE has no defined use for (RFC 9110
§9.3.5) and some clients and proxies drop. A stray call without it erases nobody.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from bot.core.phones import mask, normalise_phone
from bot.shell import supporters as people
from models import Supporter
from webhooks.api_v1.auth import caller, now, refuse, refuse_field, route
from webhooks.runtime import runtime

# A row id: 1 to the largest BIGINT, so a longer number is a 404, not a database overflow.
SUPPORTER = f"<int(min=1, max={2**63 - 1}):supporter_id>"
CONFIRMATIONS = ("erase", "ERASE")  # the console asks for ERASE typed; either case here
NOT_FOUND = "no such supporter (they may have been erased)"

_TEXT = {"type": "string"}
_MAYBE_TEXT = {"type": "string", "nullable": True}
_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {**_TIME, "nullable": True}


def _record(description: str, properties: dict[str, Any],
            loose: bool = False) -> dict[str, Any]:
    """An object schema whose every property is always present (null where it may be)."""
    return {"type": "object", "description": description, "properties": properties,
            "required": list(properties), "additionalProperties": loose}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}


SCHEMAS: dict[str, dict[str, Any]] = {
    "SupporterChannel": _record("One of the person's channels (an identity).", {
        "channel": {"type": "string", "enum": ["sms", "whatsapp", "telegram"]},
        "address": {**_TEXT, "description": "the phone number (E.164) or Telegram chat id"},
        "created_at": _MAYBE_TIME, "last_message_at": _MAYBE_TIME,
        "stopped_at": {**_MAYBE_TIME, "description": "when they said STOP here (null: "
                       "they did not, or said START since)"},
        "unreachable_at": _MAYBE_TIME}),
    "SupporterSignature": _record("A signature, as made.", {
        "petition": _MAYBE_TEXT, "number": {"type": "integer"}, "name": _TEXT,
        "postcode": _MAYBE_TEXT, "country": _MAYBE_TEXT, "nation": _TEXT, "channel": _TEXT,
        "referral": _MAYBE_TEXT, "signed_at": _MAYBE_TIME}),
    "SupporterSubscription": _record("Updates they chose to get, on one channel.", {
        "petition": _MAYBE_TEXT, "channel": _TEXT, "since": _MAYBE_TIME}),
    "SupporterConsent": _record("A consent given or withdrawn, with its evidence.", {
        "purpose": {**_TEXT, "description": "sign, updates or publish_voice"},
        "action": {"type": "string", "enum": ["granted", "withdrawn"]},
        "petition": _MAYBE_TEXT,
        "wording_version": {**_TEXT, "description": "the version of the text they agreed to"},
        "channel": _TEXT,
        "evidence": {**_TEXT, "description": "the provider's id of the message that gave it"},
        "at": _MAYBE_TIME}),
    "SupporterVoice": _record("A \"why I signed\" message they left.", {
        "petition": _MAYBE_TEXT, "text": _TEXT, "publish_consent": {"type": "boolean"},
        "status": {"type": "string", "enum": ["pending", "approved", "rejected"]},
        "created_at": _MAYBE_TIME}),
    "Supporter": _record(
        "A person as the console's own page shows them: full and masked number, channels, "
        "signatures, updates, consent history and voices.", {
            "id": {"type": "integer"},
            "phone": {**_MAYBE_TEXT, "description": "E.164 (null: Telegram only)"},
            "masked": {**_MAYBE_TEXT, "description": "the number as lists and logs show it"},
            "created_at": _MAYBE_TIME,
            "channels": _list("SupporterChannel"),
            "signatures": _list("SupporterSignature"),
            "subscriptions": _list("SupporterSubscription"),
            "consent_history": _list("SupporterConsent"),
            "voices": _list("SupporterVoice")}),
    "SupporterList": _record("The people with this number (none, or one; more only if the "
                             "number is on several records).", {
        "phone": {**_TEXT, "description": "the number asked for, in E.164"},
        "items": _list("Supporter")}),
    "SupporterExport": _record(
        "Everything held about one person, exactly as the console's export.json gives it "
        "(the document handed to them for a subject access request).", {
            "controller": {**_TEXT, "description": "the charity (organisation.name)"},
            "contact": _TEXT, "generated_at": _TIME,
            "supporter": _record("Their record.", {"id": {"type": "integer"},
                                                   "phone": _MAYBE_TEXT,
                                                   "created_at": _MAYBE_TIME}),
            "identities": _list("SupporterChannel"),
            "signatures": _list("SupporterSignature"),
            "consent_history": _list("SupporterConsent"),
            "subscriptions": _list("SupporterSubscription"),
            "conversations": {"type": "array", "items": _record(
                "Where they are in the conversation, on one channel.", {
                    "channel": _TEXT, "step": _TEXT, "data": {"type": "object"},
                    "updated_at": _MAYBE_TIME})},
            "voices": _list("SupporterVoice"),
            "messages_received": {"type": "array", "items": _record(
                "A message they sent, and the bot's answers.", {
                    "channel": _TEXT, "text": _MAYBE_TEXT,
                    "answered": {"type": "array", "items": _MAYBE_TEXT},
                    "at": _MAYBE_TIME})},
            "messages_sent": {"type": "array", "items": _record(
                "An announcement or a staff reply sent to them.", {
                    "announcement": {"type": "integer", "nullable": True},
                    "channel": _TEXT, "status": _TEXT, "sent_at": _MAYBE_TIME,
                    "text": _MAYBE_TEXT})},
            "inbox": {"type": "array", "items": {
                "type": "object", "description": "A conversation with staff: their words, "
                "staff replies, notes and follow-ups."}}}),
    "SupporterErasure": {
        "type": "object",
        "description": "Confirms the erasure; a stray call without it erases nobody.",
        "properties": {"confirm": {"type": "string", "enum": list(CONFIRMATIONS)}},
        "required": ["confirm"],
        "additionalProperties": False,
    },
    "SupporterErased": _record("What the erasure did (no personal data).", {
        "id": {"type": "integer"}, "erased": {"type": "boolean", "enum": [True]},
        "signatures_withdrawn": {"type": "integer", "minimum": 0,
                                 "description": "the counts went down by as many"},
        "suppression_kept": {"type": "integer", "minimum": 0, "description": "numbers that "
                             "said STOP, kept bare only so that they are never messaged"}}),
}

@route("/supporters", "admin", methods=["GET"])
def supporters() -> Any:
    """The people with a phone number, as the console's own page shows each (audited).
    ---
    get:
      summary: Find supporters by phone number
      parameters:
        - in: query
          name: phone
          required: true
          description: Any UK or international form (07700 900123, +44 7700 900123...),
            read as the console reads it; write a leading + as %2B.
          schema: {type: string, maxLength: 32}
      responses:
        200:
          description: The people with this number (an empty list when nobody has it);
            each one found is audited as opened.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/SupporterList'}
        400:
          description: No phone, or not a phone number (`field` is phone).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/FieldError'}
    """
    raw = request.args.get("phone", "").strip()
    if not raw:
        refuse_field("phone", "phone: give the number to look for (?phone=07700900123)")
    phone = normalise_phone(raw)
    if phone is None:
        refuse_field("phone", "phone: not a phone number (a UK number, or + and the country code)")
    with runtime().sessions.begin() as session:
        found = [people.view(session, i, caller().email, now())
                 for i in people.by_phone(session, phone)]
    return jsonify({"phone": phone, "items": [_person(d) for d in found if d is not None]})


@route(f"/supporters/{SUPPORTER}/export", "admin", methods=["GET"])
def export(supporter_id: int) -> Any:
    """Everything held about one person, the console's export.json (a subject access request).
    ---
    get:
      summary: Export a supporter's data
      responses:
        200:
          description: The same document as the console's download (audited as an export).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/SupporterExport'}
        404:
          description: No supporter has this id (they may have been erased).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    with runtime().sessions.begin() as session:
        body = people.export(session, supporter_id, runtime().config.organisation,
                             caller().email, now())
    if body is None:
        refuse(404, NOT_FOUND)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="supporter-{supporter_id}.json"'})


@route(f"/supporters/{SUPPORTER}/erase", "admin", methods=["POST"])
def erase(supporter_id: int) -> Any:
    """Erase a person, as their own DELETE would: it cannot be undone.
    ---
    post:
      summary: Erase a supporter
      description: Erase a person, as their own DELETE would; it cannot be undone.
        Their signatures are withdrawn (the counts go down), and their consent
        records, subscriptions, conversations, voices and the text of their messages are
        deleted. A number that said STOP is kept, bare, only so it is never messaged
        again. Export their data first if they asked for a copy.
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/SupporterErasure'}
      responses:
        200:
          description: Erased (audited with the counts only).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/SupporterErased'}
        400:
          description: >-
            No `{"confirm": "erase"}` (`field` is confirm, or the field that does not
            belong); nobody was erased.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/FieldError'}
        404:
          description: No supporter has this id (they may have been erased).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    body = request.get_json(silent=True)
    with runtime().sessions.begin() as session:
        if session.get(Supporter, supporter_id) is None:  # unknown is 404, whatever the body
            refuse(404, NOT_FOUND)
        _confirmed(body)
        erased = people.erase(session, supporter_id, caller().email, now())
    if erased is None:  # erased by someone else in the meantime
        refuse(404, NOT_FOUND)
    return jsonify({"id": supporter_id, "erased": True,
                    "signatures_withdrawn": erased.signatures,
                    "suppression_kept": erased.suppressed})


def _confirmed(body: Any) -> None:
    """400 unless the body is exactly `{"confirm": "erase"}` (or ERASE, the console's word)."""
    if isinstance(body, dict):
        for name in body:
            if name != "confirm":
                refuse_field(str(name)[:64], f"{str(name)[:64]}: not a field of an erasure "
                         "(send only {\"confirm\": \"erase\"})")
        if body.get("confirm") in CONFIRMATIONS:
            return
    refuse_field("confirm", 'confirm: send {"confirm": "erase"} to erase this person; '
                        "nobody was erased")


def _person(data: dict[str, Any]) -> dict[str, Any]:
    """The console's person page as JSON, from the same subject access data."""
    record = data["supporter"]
    return {"id": record["id"], "phone": record["phone"],
            "masked": mask(record["phone"]) if record["phone"] else None,
            "created_at": record["created_at"], "channels": data["identities"],
            "signatures": data["signatures"], "subscriptions": data["subscriptions"],
            "consent_history": data["consent_history"], "voices": data["voices"]}
