"""Events for other systems (DESIGN §9): what happened, recorded in the transaction that
made it happen, for the worker to post to each receiver that asked for it.

`record` is the one way an event is made. It writes the event and one delivery per
receiver that wants its type, or nothing at all when no receiver does (a campaign with no
integrations pays one small read per event). The worker posts each delivery as

    {"id": "evt_...", "type": "signature.created", "created": "2026-...Z", "data": {...}}

with `X-Petitionbot-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, keyed with the
receiver's secret as UTF-8 (`signature`).

An erasure really deletes what events hold about the person: every earlier event of theirs
keeps only its ids (`scrub`), so a delivery still pending goes out with those alone, and
the erasure's own events (`signature.withdrawn` for each signature, then
`supporter.erased`) never held more. The simulator's sandbox records none (`silence`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, literal, select, true, update

from models.base import UTCDateTime
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
BATCH = 1000  # rows per statement when many events are recorded at once

# An engine (or connection) with this execution option set to False records no events.
RECORDING = "petitionbot_events"
# What an erased person's earlier events keep: ids, and facts that say nothing about them.
KEPT = ("petition", "id", "number", "supporter", "conversation", "channel", "subscribed",
        "reason")
KEPT_OF_MESSAGE = ("id", "direction")


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
    in the caller's transaction; its id, or None when nobody asked for it (or the
    connection is `silence`d)."""
    made = record_many(conn, type_, [(data, supporter_id)], now, receiver_id)
    return made[0] if made else None


def record_many(conn: Connection, type_: str,
                items: Sequence[tuple[dict[str, Any], int | None]], now: dt.datetime,
                receiver_id: int | None = None) -> list[str]:
    """Record one event per (data, supporter id) in `items`, in that order, as `record`
    does, in a few statements whatever their number (an import of thousands); their ids,
    or an empty list when nobody asked for them."""
    if not items or not conn.get_execution_options().get(RECORDING, True):
        return []
    query = select(event_receivers.c.id, event_receivers.c.events)
    if conn.dialect.name == "postgresql":
        # FOR KEY SHARE: a receiver removed meanwhile waits for this transaction rather than
        # failing it on the deliveries' foreign key (a signing must never fail for an
        # integration), while signings share the lock and never wait for each other.
        query = query.with_for_update(read=True, key_share=True)
    if receiver_id is not None:
        query = query.where(event_receivers.c.id == receiver_id)
    wanted = [rid for rid, types in conn.execute(query)
              if receiver_id is not None or type_ in (types or [])]
    if not wanted:
        return []
    public_ids = [new_id() for _ in items]
    for start in range(0, len(items), BATCH):
        chunk = public_ids[start:start + BATCH]
        conn.execute(insert(events_table), [
            {"public_id": public_id, "type": type_, "supporter_id": supporter_id,
             "data": data, "created_at": now}
            for public_id, (data, supporter_id) in zip(chunk, items[start:start + BATCH],
                                                       strict=True)])
        # One delivery per event and receiver, numbered in the events' order: the courier
        # keeps each supporter's order by delivery id.
        made = (select(events_table.c.id, event_receivers.c.id, events_table.c.supporter_id,
                       literal("pending"), literal(0), literal(now, UTCDateTime()),
                       literal(now, UTCDateTime()))
                .select_from(events_table.join(event_receivers, true()))  # each with each
                .where(events_table.c.public_id.in_(chunk),
                       event_receivers.c.id.in_(wanted))
                .order_by(events_table.c.id, event_receivers.c.id))
        conn.execute(insert(event_deliveries).from_select(
            ["event_id", "receiver_id", "supporter_id", "status", "attempts",
             "next_attempt_at", "created_at"], made))
    return public_ids


def signature_data(slug: str, row: Any) -> dict[str, Any]:
    """A `signature.created` event's data: the feed's fields for one signature (its row
    from `signatures`), with the petition's slug. The same shape for every channel,
    "paper" included (whose `source` says where it was collected)."""
    return {"petition": slug, "id": row.id, "number": row.number,
            "supporter": row.supporter_id, "name": row.name, "postcode": row.postcode,
            "country": row.country, "nation": row.nation, "channel": row.channel,
            "source": row.source, "referral": row.referral, "signed_at": when(row.signed_at)}


def withdrawn_data(slug: str, signature_id: int, number: int, supporter_id: int,
                   reason: str) -> dict[str, Any]:
    """A `signature.withdrawn` event's data; `reason` says why it went ("erased")."""
    return {"petition": slug, "id": signature_id, "number": number,
            "supporter": supporter_id, "reason": reason}


def erased_data(supporter_id: int) -> dict[str, Any]:
    """A `supporter.erased` event's data: the id alone."""
    return {"supporter": supporter_id}


def subscription_data(supporter_id: int | None, slug: str, channel: str, subscribed: bool,
                      reason: str) -> dict[str, Any]:
    """A `subscription.changed` event's data: updates about `slug` on one channel, on or
    off, and why ("opted_in", "stop", "provider_opt_out")."""
    return {"supporter": supporter_id, "petition": slug, "channel": channel,
            "subscribed": subscribed, "reason": reason}


def message_data(conversation_id: int, supporter_id: int, channel: str, message_id: int,
                 text: str, at: dt.datetime, flagged: bool) -> dict[str, Any]:
    """A `conversation.message` event's data: the supporter's message as
    GET /api/v1/conversations shows its messages."""
    return {"conversation": conversation_id, "supporter": supporter_id, "channel": channel,
            "message": {"id": message_id, "direction": "in", "text": text, "at": when(at)},
            "flagged": flagged}


def ids_only(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data with nothing personal left: its ids (KEPT)."""
    kept = {key: value for key, value in data.items() if key in KEPT}
    if isinstance(data.get("message"), dict):
        kept["message"] = {key: value for key, value in data["message"].items()
                           if key in KEPT_OF_MESSAGE}
    return kept


def scrub(conn: Connection, supporter_id: int) -> int:
    """Keep only the ids of every event recorded about this person (their erasure); how
    many events held more."""
    changed = 0
    for event_id, data in conn.execute(select(events_table.c.id, events_table.c.data)
                                       .where(events_table.c.supporter_id == supporter_id)):
        if (bare := ids_only(data or {})) != data:
            conn.execute(update(events_table).where(events_table.c.id == event_id)
                         .values(data=bare))
            changed += 1
    return changed


def silence(engine: Engine) -> Engine:
    """`engine`, from now on recording no event through any of its connections (the
    simulator's sandbox: what staff try out there must never reach a receiver). Changed in
    place, not copied: models/db keeps per-engine state that a copy would lack."""
    engine.update_execution_options(**{RECORDING: False})
    return engine


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
    "KEPT",
    "PING",
    "RECORDING",
    "SIGNATURE_CREATED",
    "SIGNATURE_WITHDRAWN",
    "SUBSCRIPTION_CHANGED",
    "SUPPORTER_ERASED",
    "TYPES",
    "body",
    "erased_data",
    "ids_only",
    "message_data",
    "new_id",
    "new_secret",
    "record",
    "record_many",
    "scrub",
    "signature",
    "signature_data",
    "silence",
    "subscription_data",
    "verify",
    "when",
    "withdrawn_data",
]
