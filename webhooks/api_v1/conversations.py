"""Conversations waiting for a person (DESIGN §9): list them, reply, close (editor).

A reply travels like an announcement, through the outbox at the channel's rate; when the
channel cannot carry it now (STOP, unreachable, WhatsApp outside the 24-hour window) the
answer is 409 with the reason in words, and nothing is queued.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import jsonify, request
from sqlalchemy.orm import Session

from bot.shell import inbox
from models import StaffUser
from webhooks.api_v1.auth import caller, json_body, now, refuse, route
from webhooks.runtime import runtime

STATUSES = {"open": "open", "closed": "closed"}
MAX_LIMIT = 200
MAX_TEXT = 1600  # the longest SMS Twilio takes; a channel may take less (400 says why)
# A row id: 1 to the largest BIGINT, so a longer number is a 404, not a database overflow.
CONVERSATION = f"<int(min=1, max={2**63 - 1}):conversation_id>"

_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {**_TIME, "nullable": True}
SCHEMAS: dict[str, dict[str, Any]] = {
    "ConversationMessage": {
        "type": "object",
        "description": "A message of a conversation: the supporter's, the bot's reply to one "
                       "of them, or a staff member's reply.",
        "properties": {
            "id": {"type": "integer", "nullable": True,
                   "description": "null for the bot's replies, which have no id of their own"},
            "in_reply_to": {"type": "integer", "nullable": True,
                            "description": "the bot's replies: the supporter's message they "
                                           "answered"},
            "direction": {"type": "string", "enum": ["in", "out"]},
            "kind": {"type": "string", "enum": ["in", "bot", "staff"]},
            "text": {"type": "string"},
            "at": _TIME,
            "staff": {"type": "string", "nullable": True,
                      "description": "who wrote a staff reply"},
            "delivery_state": {
                "type": "string", "nullable": True,
                "enum": [*sorted(set(inbox.DELIVERY_STATE.values())), None],
                "description": "a staff reply's way to the supporter (unknown: it may or may "
                               "not have gone)"},
            "flagged": {"type": "boolean",
                        "description": "the words may need care (distress, a complaint)"},
        },
        "required": ["id", "in_reply_to", "direction", "kind", "text", "at", "staff",
                     "delivery_state", "flagged"],
        "additionalProperties": False,
    },
    "Conversation": {
        "type": "object",
        "description": "A supporter's messages that wait for a person, and the answers.",
        "properties": {
            "id": {"type": "integer"},
            "channel": {"type": "string", "enum": ["sms", "whatsapp", "telegram"]},
            "supporter": {"type": "integer", "description": "the supporter's id"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "flagged": {"type": "boolean"},
            "assigned_to": {"type": "string", "nullable": True,
                            "description": "the staff member answering it"},
            "waiting_since": {**_MAYBE_TIME,
                              "description": "the oldest supporter message not yet answered"},
            "last_message_at": _MAYBE_TIME,
            "messages": {"type": "array",
                         "items": {"$ref": "#/components/schemas/ConversationMessage"}},
        },
        "required": ["id", "channel", "supporter", "status", "flagged", "assigned_to",
                     "waiting_since", "last_message_at", "messages"],
        "additionalProperties": False,
    },
    "ConversationList": {
        "type": "object",
        "properties": {"items": {"type": "array",
                                 "items": {"$ref": "#/components/schemas/Conversation"}}},
        "required": ["items"],
        "additionalProperties": False,
    },
    "StaffReply": {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
        "required": ["text"],
    },
    "ClosedConversation": {
        "type": "object",
        "properties": {"id": {"type": "integer"},
                       "status": {"type": "string", "enum": ["closed"]}},
        "required": ["id", "status"],
        "additionalProperties": False,
    },
}


def _at(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _message(entry: inbox.Entry) -> dict[str, Any]:
    # The bot's replies are read off the supporter's message they answered: no id of their own.
    bot = entry.kind == "bot"
    return {"id": None if bot else entry.id, "in_reply_to": entry.id if bot else None,
            "direction": "in" if entry.kind == "in" else "out",
            "kind": entry.kind, "text": entry.text, "at": _at(entry.at),
            "staff": entry.staff_name, "delivery_state": entry.delivery_state,
            "flagged": entry.flagged}


def _item(summary: inbox.Summary, thread: inbox.Thread | None) -> dict[str, Any]:
    entries = thread.entries if thread is not None else []
    return {
        "id": summary.id, "channel": summary.channel, "supporter": summary.supporter_id,
        "status": summary.status, "flagged": summary.flagged,
        "assigned_to": summary.assigned_name, "waiting_since": _at(summary.waiting_since),
        "last_message_at": _at(summary.last_message_at),
        # Internal notes are the staff's own, not messages of the conversation.
        "messages": [_message(e) for e in entries if e.kind != "note"],
    }


@route("/conversations", "editor", methods=["GET"])
def conversations() -> Any:
    """Conversations that wait for a person (or closed ones), flagged first, then the
    longest waiting.
    ---
    get:
      summary: List conversations
      parameters:
        - in: query
          name: status
          schema: {type: string, enum: [open, closed], default: open}
        - in: query
          name: limit
          schema: {type: integer, minimum: 1, maximum: 200, default: 50}
      responses:
        200:
          description: The conversations, each with its messages (staff notes left out).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ConversationList'}
        400:
          description: A status or limit out of range.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    status = request.args.get("status", "open")
    if status not in STATUSES:
        refuse(400, "status: open or closed")
    limit = request.args.get("limit", 50, type=int)
    if not 1 <= limit <= MAX_LIMIT:
        refuse(400, f"limit: 1 to {MAX_LIMIT}")
    at = now()
    with runtime().sessions() as session:
        found = inbox.summaries(session, STATUSES[status], caller().id, limit=limit)
        items = [_item(s, inbox.thread(session, s.id, at)) for s in found]
    return jsonify({"items": items})


def _staff(session: Session) -> StaffUser:
    user = session.get(StaffUser, caller().id)
    if user is None or not user.active:
        refuse(401, "this token's staff member no longer exists")
    return user


@route(f"/conversations/{CONVERSATION}/messages", "editor", methods=["POST"])
def reply(conversation_id: int) -> Any:
    """Send a staff reply to the supporter on their channel, through the outbox.
    ---
    post:
      summary: Reply to a conversation
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/StaffReply'}
      responses:
        201:
          description: The reply, queued for sending.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ConversationMessage'}
        400:
          description: Not a JSON object, no text, or a text the channel cannot carry
            (too long, or characters it cannot send).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        404:
          description: No such conversation.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
        409:
          description: The channel cannot carry a reply now, and nothing was queued; the
            error says why (the conversation is closed, the supporter sent STOP or cannot be
            reached, WhatsApp outside the 24-hour window).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    text = json_body().get("text")
    if not isinstance(text, str) or not text.strip():
        refuse(400, "text: write the reply")
    if len(text) > MAX_TEXT:
        refuse(400, f"text: at most {MAX_TEXT} characters")
    with runtime().sessions.begin() as session:  # the inbox audits it in the staff's name
        try:
            entry = inbox.reply(session, conversation_id, _staff(session), text, now())
        except inbox.NotFound:
            refuse(404, "no such conversation")
        except inbox.CannotReply as error:
            refuse(409, error.reason)
        except inbox.Invalid as error:
            refuse(400, f"text: {error}")
        except inbox.NotAllowed as error:
            refuse(403, str(error))
    return jsonify(_message(entry)), 201


@route(f"/conversations/{CONVERSATION}/close", "editor", methods=["POST"])
def close(conversation_id: int) -> Any:
    """Close a conversation: the supporter's next message opens a new one.
    ---
    post:
      summary: Close a conversation
      responses:
        200:
          description: The conversation is closed (closing a closed one changes nothing).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ClosedConversation'}
        404:
          description: No such conversation.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    with runtime().sessions.begin() as session:
        try:
            inbox.close(session, conversation_id, _staff(session), now())
        except inbox.NotFound:
            refuse(404, "no such conversation")
        except inbox.NotAllowed as error:
            refuse(403, str(error))
    return jsonify({"id": conversation_id, "status": "closed"})
