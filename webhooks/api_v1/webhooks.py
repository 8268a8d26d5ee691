"""Event receivers ("webhooks", DESIGN §9, admins only): subscribe one, list them, test one
with a ping, send its parked deliveries again, remove it.

Each goes through bot.shell.event_receivers, as the console's Receivers page does, so the
rules (https, or http to a host in `[api] http_webhook_hosts`; a non-empty list of event
types) and the audit entries are the console's, in the token's staff member's name.

`events` is required and must name at least one type: a receiver hears only of what it
asked for, so a type added in a later version is never posted to a system that does not
know it. The secret is in the 201 answer alone; no other answer holds it.

Reading receivers counts their deliveries (millions, over time) on models.db.long_read, so
no writer waits meanwhile. A DELETE answers once the receiver is stopped and hidden, after
clearing its history for at most event_receivers.REMOVE_WITHIN seconds; the worker deletes
whatever is left of it.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request, url_for
from sqlalchemy.orm import Session

from bot.shell import event_receivers as receivers
from bot.shell import events
from models.db import long_read
from webhooks.api_v1.auth import caller, now, refuse, refuse_field, route
from webhooks.runtime import runtime

# A row id: 1 to the largest BIGINT, so a longer number is a 404, not a database overflow.
MAX_ID = 2**63 - 1
RECEIVER = f"<int(min=1, max={MAX_ID}):receiver_id>"
MAX_IDS = 1000  # deliveries one retry may name
NOT_FOUND = "no such receiver (it may have been removed)"

_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {**_TIME, "nullable": True}
_TYPES = {"type": "array", "items": {"type": "string", "enum": list(events.TYPES)}}
_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_RECEIVER = {
    "id": {"type": "integer"},
    "url": _TEXT,
    "events": {**_TYPES, "description": "the event types it is sent"},
    "created_by": {**_TEXT, "description": "the staff member who added it"},
    "created_at": _TIME,
    "deliveries": {
        "type": "object", "description": "Its deliveries by status: waiting to be posted "
        "(pending), being posted (claimed), delivered, and parked after a day of failures "
        "(failed).",
        "properties": {s: {"type": "integer", "minimum": 0} for s in receivers.STATUSES},
        "required": list(receivers.STATUSES), "additionalProperties": False},
    "last_answer": {**_TEXT, "nullable": True,
                    "description": "its answer to the newest delivery tried (\"HTTP 503\", "
                                   "\"no answer\"...); null before the first"},
    "last_delivered_at": {**_MAYBE_TIME, "description": "when it last took a delivery"},
}
_PARKED = {
    "id": {**_ID, "description": "the delivery's id (to send it again)"},
    "event": {**_TEXT, "description": "the event's id, as posted (evt_...)"},
    "type": _TEXT, "created": _TIME,
    "attempts": {"type": "integer", "minimum": 0},
    "last_answer": {**_TEXT, "nullable": True}, "failed_at": _MAYBE_TIME,
    "overtaken": {"type": "boolean",
                  "description": "a later event about the same supporter has already been "
                                 "delivered (or is being posted): sending this one again "
                                 "passes it over, as it would arrive out of order"},
}


def _record(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    """An object schema whose every property is always present (null where it may be)."""
    return {"type": "object", "description": description, "properties": properties,
            "required": list(properties), "additionalProperties": False}


SCHEMAS: dict[str, dict[str, Any]] = {
    "NewReceiver": {
        "type": "object",
        "description": "Where to post events, and which. The URL is https (plain http only "
                       "to a host in the deployment's `[api] http_webhook_hosts`), with no "
                       "user name or password in it.",
        "properties": {
            "url": {**_TEXT, "maxLength": receivers.MAX_URL,
                    "description": "e.g. https://crm.example.org/petitionbot"},
            "events": {**_TYPES, "minItems": 1,
                       "description": "at least one; a ping is sent whatever is chosen"}},
        "required": ["url", "events"],
        "additionalProperties": False,
    },
    "ReceiverSecret": _record(
        "The new receiver. The secret signs every body (X-Petitionbot-Signature: "
        "sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret's UTF-8 bytes>); it "
        "is shown only in this answer.", {
            "id": {"type": "integer"}, "secret": {**_TEXT, "description": "whsec_..."}}),
    "Receiver": _record("A receiver and how its deliveries fare (never its secret).",
                        _RECEIVER),
    "ReceiverList": _record("Every receiver, oldest first.", {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Receiver"}}}),
    "ParkedDelivery": _record("A delivery that failed for a day and waits to be sent again.",
                              _PARKED),
    "ReceiverDetails": _record(
        "A receiver, with its parked deliveries (the oldest "
        f"{receivers.PARKED_SHOWN}; `deliveries.failed` counts them all).", {
            **_RECEIVER,
            "failed": {"type": "array",
                       "items": {"$ref": "#/components/schemas/ParkedDelivery"}}}),
    "ReceiverPing": _record("The ping recorded; the worker posts it to this receiver alone.", {
        "event": {**_TEXT, "description": "the ping event's id (evt_...)"}}),
    "SendAgain": {
        "type": "object",
        "description": "Which parked deliveries to send again; without a body, or without "
                       "`deliveries`, all of this receiver's.",
        "properties": {"deliveries": {"type": "array", "items": _ID, "maxItems": MAX_IDS,
                                      "description": "delivery ids (ids that are not this "
                                                     "receiver's parked ones are passed over)"}},
        "additionalProperties": False,
    },
    "SentAgain": _record("How many parked deliveries are back in the outbox, and how many "
                         "were passed over.", {
        "sent_again": {"type": "integer", "minimum": 0},
        "passed_over": {"type": "integer", "minimum": 0,
                        "description": "parked deliveries left parked: a later event about "
                                       "the same supporter has already been delivered to "
                                       "this receiver (or is being posted), so this one "
                                       "would arrive out of order"}}),
}


@route("/webhooks", "admin", methods=["GET"])
def webhooks() -> Any:
    """Every event receiver, with its deliveries' counts and last answer.
    ---
    get:
      summary: List event receivers
      responses:
        200:
          description: Each receiver, oldest first; no secrets.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ReceiverList'}
    """
    with long_read(runtime().engine) as connection, Session(connection) as session:
        found = receivers.receivers(session)
    return jsonify({"items": [_shown(v) for v in found]})


@route("/webhooks", "admin", methods=["POST"])
def subscribe() -> Any:
    """Subscribe a receiver to events; its secret is in this answer only.
    ---
    post:
      summary: Add an event receiver
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewReceiver'}
      responses:
        201:
          description: Added (audited); events of the chosen types are posted to it from
            now on. Keep the secret to check each body's signature.
          headers:
            Location:
              description: the receiver's URL in this API
              schema: {type: string}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ReceiverSecret'}
        400:
          description: Not a JSON object, a URL that is not https (or allowed http), or
            an empty or unknown list of events (`field` names it); nothing was added.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/FieldError'}
    """
    body = _object()
    for name in body:
        if name not in ("url", "events"):
            refuse_field(str(name)[:64], f"{str(name)[:64]}: not a field of a receiver "
                                         "(send url and events)")
    rt = runtime()
    try:
        with rt.sessions.begin() as session:
            made, secret = receivers.add(session, body.get("url"), body.get("events"),
                                         caller().email, rt.config.api, now())
    except receivers.ReceiverError as error:
        refuse_field(error.field, str(error))
    response = jsonify({"id": made.id, "secret": secret})
    response.status_code = 201
    response.headers["Location"] = url_for("api_v1.webhook", receiver_id=made.id)
    return response


@route(f"/webhooks/{RECEIVER}", "admin", methods=["GET"])
def webhook(receiver_id: int) -> Any:
    """A receiver, with its parked deliveries.
    ---
    get:
      summary: Read an event receiver
      responses:
        200:
          description: The receiver, and the deliveries parked after a day of failures.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ReceiverDetails'}
        404:
          description: No receiver has this id.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    with long_read(runtime().engine) as connection, Session(connection) as session:
        found = receivers.receiver(session, receiver_id)
    if found is None:
        refuse(404, NOT_FOUND)
    return jsonify({**_shown(found), "failed": [
        {"id": p.delivery, "event": p.event, "type": p.type, "created": _iso(p.created),
         "attempts": p.attempts, "last_answer": p.last_answer, "failed_at": _iso(p.failed_at),
         "overtaken": p.overtaken}
        for p in found.parked]})


@route(f"/webhooks/{RECEIVER}", "admin", methods=["DELETE"])
def unsubscribe(receiver_id: int) -> Any:
    """Remove a receiver, with every delivery still due to it.
    ---
    delete:
      summary: Remove an event receiver
      description: Remove a receiver (audited). No event is made for it from now on, and
        it is no longer listed; its deliveries, delivered or waiting, are deleted, with the
        events no other receiver still has to hear of (a long history in part after the
        answer, by the worker, within minutes).
      responses:
        204:
          description: Removed.
        404:
          description: No receiver has this id.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    rt = runtime()
    with rt.sessions.begin() as session:
        removed = receivers.remove(session, receiver_id, caller().email, now())
    if not removed:
        refuse(404, NOT_FOUND)
    receivers.start_clearing(rt.sessions, receiver_id)
    return "", 204


@route(f"/webhooks/{RECEIVER}/ping", "admin", methods=["POST"])
def ping(receiver_id: int) -> Any:
    """Send a receiver a ping, to test it.
    ---
    post:
      summary: Ping an event receiver
      description: Record a `ping` event for this receiver alone (audited); the worker posts
        it, signed, like any event, so the receiver's answer shows in its `last_answer`.
      responses:
        202:
          description: The ping is in the outbox.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ReceiverPing'}
        404:
          description: No receiver has this id.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    with runtime().sessions.begin() as session:
        event = receivers.ping(session, receiver_id, caller().email, now())
    if event is None:
        refuse(404, NOT_FOUND)
    response = jsonify({"event": event})
    response.status_code = 202
    return response


@route(f"/webhooks/{RECEIVER}/retry", "admin", methods=["POST"])
def retry(receiver_id: int) -> Any:
    """Send a receiver's parked deliveries again.
    ---
    post:
      summary: Send parked deliveries again
      description: Put a receiver's parked (failed) deliveries, all or those named, back in
        the outbox as new (audited); the worker posts them again, with their backoff
        started afresh. One about a supporter whose later event this receiver has already
        been delivered (or is being posted) stays parked, as it would arrive out of order
        (`passed_over` counts them).
      requestBody:
        required: false
        content:
          application/json:
            schema: {$ref: '#/components/schemas/SendAgain'}
      responses:
        200:
          description: How many went back in the outbox (0 when none was parked), and how
            many were passed over.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/SentAgain'}
        400:
          description: A body that is not a JSON object, or `deliveries` not a list of
            ids (`field` names it); nothing was sent again.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/FieldError'}
        404:
          description: No receiver has this id.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    chosen = _deliveries(_object() if request.get_data() else {})
    with runtime().sessions.begin() as session:
        sent = receivers.send_again(session, receiver_id, chosen, caller().email, now())
    if sent is None:
        refuse(404, NOT_FOUND)
    return jsonify({"sent_again": sent.sent, "passed_over": sent.passed_over})


def _object() -> dict[str, Any]:
    """The JSON object sent; else a 400 naming the body."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        refuse_field("body", "body: send a JSON object (Content-Type: application/json)")
    return body


def _deliveries(body: dict[str, Any]) -> list[int] | None:
    """The delivery ids asked for, or None for all."""
    for name in body:
        if name != "deliveries":
            refuse_field(str(name)[:64], f"{str(name)[:64]}: not a field here (send "
                                         "deliveries, or nothing for all)")
    if "deliveries" not in body:
        return None
    ids = body["deliveries"]
    if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(
            isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_ID for i in ids):
        refuse_field("deliveries", f"deliveries: a list of at most {MAX_IDS} delivery ids")
    return ids


def _shown(view: receivers.View) -> dict[str, Any]:
    return {"id": view.id, "url": view.url, "events": list(view.events),
            "created_by": view.created_by, "created_at": _iso(view.created_at),
            "deliveries": view.counts, "last_answer": view.last_answer,
            "last_delivered_at": _iso(view.last_delivered_at)}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None
