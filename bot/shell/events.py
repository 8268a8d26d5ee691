"""Events for other systems (DESIGN §9): what happened, recorded in the transaction that
made it happen, for the worker to post to each receiver that asked for it.

`record` is the one way an event is made. It writes the event and one delivery per
receiver that wants its type, or nothing at all when no receiver does (a campaign with no
integrations pays one small read per event). The worker posts each delivery as

    {"id": "evt_...", "type": "signature.created", "created": "2026-...Z", "data": {...}}

with `X-Petitionbot-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, keyed with the
receiver's secret as UTF-8 (`signature`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from typing import Any

from sqlalchemy import Connection, insert, select

from models.tables import event_deliveries, event_receivers, events_table

SIGNATURE_CREATED = "signature.created"
SIGNATURE_WITHDRAWN = "signature.withdrawn"
SUPPORTER_ERASED = "supporter.erased"
SUBSCRIPTION_CHANGED = "subscription.changed"
CONVERSATION_MESSAGE = "conversation.message"
PING = "ping"  # sent only to the receiver being tested, whatever it asked for

TYPES = (SIGNATURE_CREATED, SIGNATURE_WITHDRAWN, SUPPORTER_ERASED, SUBSCRIPTION_CHANGED,
         CONVERSATION_MESSAGE)

HEADER = "X-Petitionbot-Signature"


def new_id() -> str:
    return "evt_" + secrets.token_hex(16)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def when(at: dt.datetime) -> str:
    """Times in events: UTC, to the second, with a Z."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(conn: Connection, type_: str, data: dict[str, Any], supporter_id: int | None,
           now: dt.datetime, receiver_id: int | None = None) -> str | None:
    """Record an event for every receiver that asked for `type_` (or only `receiver_id`),
    in the caller's transaction; its id, or None when nobody asked for it."""
    query = select(event_receivers.c.id, event_receivers.c.events)
    if receiver_id is not None:
        query = query.where(event_receivers.c.id == receiver_id)
    wanted = [rid for rid, types in conn.execute(query)
              if receiver_id is not None or type_ in (types or [])]
    if not wanted:
        return None
    public_id = new_id()
    event_id = conn.execute(insert(events_table).values(
        public_id=public_id, type=type_, supporter_id=supporter_id, data=data,
        created_at=now).returning(events_table.c.id)).scalar_one()
    conn.execute(insert(event_deliveries), [
        {"event_id": event_id, "receiver_id": rid, "supporter_id": supporter_id,
         "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
        for rid in wanted])
    return public_id


def signature_data(slug: str, row: Any) -> dict[str, Any]:
    """A `signature.created` event's data: the feed's fields for one signature (its row
    from `signatures`), with the petition's slug. The same shape for every channel,
    "paper" included (whose `source` says where it was collected)."""
    return {"petition": slug, "id": row.id, "number": row.number,
            "supporter": row.supporter_id, "name": row.name, "postcode": row.postcode,
            "country": row.country, "nation": row.nation, "channel": row.channel,
            "source": row.source, "referral": row.referral, "signed_at": when(row.signed_at)}


def body(public_id: str, type_: str, created: dt.datetime, data: dict[str, Any]) -> bytes:
    """The bytes posted to a receiver (and signed)."""
    return json.dumps({"id": public_id, "type": type_, "created": when(created),
                       "data": data}, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, raw: bytes) -> str:
    """The X-Petitionbot-Signature header's value for `raw`."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def verify(secret: str, raw: bytes, header: str) -> bool:
    """What a receiver does (the README's example): compare in constant time."""
    return hmac.compare_digest(signature(secret, raw), header)


__all__ = [
    "CONVERSATION_MESSAGE",
    "HEADER",
    "PING",
    "SIGNATURE_CREATED",
    "SIGNATURE_WITHDRAWN",
    "SUBSCRIPTION_CHANGED",
    "SUPPORTER_ERASED",
    "TYPES",
    "body",
    "new_id",
    "new_secret",
    "record",
    "signature",
    "signature_data",
    "verify",
    "when",
]
