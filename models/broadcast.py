"""Announcements and their outbox of deliveries.

Announcement lifecycle: draft -> approved -> (scheduled ->) sending -> sent, or cancelled
from any state before sent; sending <-> paused.

Delivery lifecycle (the row is the truth of what was sent to whom):
pending -> claimed (a worker leased it) -> sending (about to call the provider; committed
before the call) -> sent -> delivered, or failed / skipped; a `sending` row whose worker
died is `unknown` (it may or may not have gone out, so it is never resent); a `claimed`
row whose lease ran out goes back to pending (it was never attempted).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, intpk, timestamp

OPEN = ("pending", "claimed", "sending")       # a delivery still to be settled
DONE = ("sent", "delivered", "failed", "skipped", "unknown")

class Announcement(Base):
    __tablename__ = "announcements"
    __table_args__ = (UniqueConstraint("petition_id", "milestone"),)

    id: Mapped[intpk]
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    text: Mapped[str] = mapped_column(Text)
    channels: Mapped[list[str]] = mapped_column(JSON)          # empty: every channel
    nations: Mapped[list[str]] = mapped_column(JSON)           # empty: everywhere
    postcode_areas: Mapped[list[str]] = mapped_column(JSON)    # empty: everywhere
    test_group: Mapped[bool] = mapped_column(default=False)    # only the staff test numbers
    whatsapp_content_sid: Mapped[str | None] = mapped_column(String(40))
    whatsapp_variables: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    milestone: Mapped[int | None] = mapped_column(Integer)
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[timestamp]
    edited_by: Mapped[str | None] = mapped_column(String(120))  # who last changed the text
    approved_by: Mapped[str | None] = mapped_column(String(120))
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cancelled_by: Mapped[str | None] = mapped_column(String(120))
    # "marketing" (campaigning: needs updates consent, names the charity, says how to stop)
    # or "service" (neutral news about the signature itself); both honour STOP.
    kind: Mapped[str] = mapped_column(String(16), default="marketing")


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("announcement_id", "identity_id"),
                      Index("ix_deliveries_claim", "channel", "status", "next_attempt_at"),
                      Index("ix_deliveries_identity_status", "identity_id", "status"))

    id: Mapped[intpk]
    # NULL for a direct message (a staff reply, a notice to staff), whose own `text` is sent.
    # Typed int: every query that reads it is about an announcement's own rows.
    announcement_id: Mapped[int] = mapped_column(ForeignKey("announcements.id"), nullable=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    worker: Mapped[str | None] = mapped_column(String(64))
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    error_code: Mapped[str | None] = mapped_column(String(40))
    used_template: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[timestamp]
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    text: Mapped[str | None] = mapped_column(Text)  # a direct message's text, as sent
    # A staff reply's inbox entry: erasing the supporter or their conversation deletes it.
    inbox_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbox_messages.id", ondelete="CASCADE"), index=True)


class Worker(Base):
    """A running broadcast worker's heartbeat: rows held by a silent worker are recovered."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[timestamp]
    last_seen: Mapped[timestamp]
