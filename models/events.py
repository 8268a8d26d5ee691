"""Events for other systems (DESIGN §9): receivers, the events themselves, and their
outbox of deliveries, one row per event and receiver.

An event is written in the same transaction as the change it reports, with one delivery
row for each receiver that asked for its type; the worker posts them (bot/shell/events.py).

Delivery lifecycle (the row is the truth of what was delivered to whom):
pending -> claimed (a worker leased it, and posts it) -> delivered (a 2xx answer), or back
to pending with `next_attempt_at` after a non-2xx or no answer, or `failed` (parked) once
it has been retried for a day. A `claimed` row whose lease ran out goes back to pending and
is posted again: delivery is at least once, and receivers de-duplicate by the event's id.
A delivery waits while an earlier one for the same supporter and receiver is unsettled, so
each receiver hears of one supporter in order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, intpk, timestamp

UNSETTLED = ("pending", "claimed")
SETTLED = ("delivered", "failed")


class Receiver(Base):
    """A system that asked for events: its URL, the types it wants, and the shared secret
    that signs each body (kept readable: it is needed to sign)."""

    __tablename__ = "event_receivers"

    id: Mapped[intpk]
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(80))
    events: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[timestamp]


class Event(Base):
    __tablename__ = "events"

    id: Mapped[intpk]                      # the order events were made in
    public_id: Mapped[str] = mapped_column(String(40), unique=True)   # "evt_<hex>"
    type: Mapped[str] = mapped_column(String(40))
    # Whose event (for per-supporter order); not a foreign key: an erasure's own events
    # outlive the person they are about. None for a receiver's ping.
    supporter_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[timestamp] = mapped_column(index=True)


class EventDelivery(Base):
    __tablename__ = "event_deliveries"
    # _receiver: a receiver's counts by status and its last delivery, read from the index
    # alone (staff's list of receivers), and its deliveries found by status when removed.
    __table_args__ = (Index("ix_event_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_event_deliveries_order", "receiver_id", "supporter_id",
                            "status"),
                      Index("ix_event_deliveries_receiver", "receiver_id", "status",
                            "delivered_at"))

    id: Mapped[intpk]
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"),
                                          index=True)
    receiver_id: Mapped[int] = mapped_column(
        ForeignKey("event_receivers.id", ondelete="CASCADE"))
    supporter_id: Mapped[int | None] = mapped_column(BigInteger)   # the event's, for order
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    worker: Mapped[str | None] = mapped_column(String(64))
    last_answer: Mapped[str | None] = mapped_column(String(120))  # "HTTP 503", "no answer"
    created_at: Mapped[timestamp]
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


__all__ = ["SETTLED", "UNSETTLED", "Event", "EventDelivery", "Receiver"]
