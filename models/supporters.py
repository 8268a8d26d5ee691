"""Petitions, supporters, their channel identities, conversations, signatures and consent."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, BigId, UTCDateTime, intpk, timestamp


class Petition(Base):
    """A petition's row: its counters, and its live content once staff have changed it
    (null: config.toml's content; models/content.py keeps every version)."""

    __tablename__ = "petitions"

    id: Mapped[intpk]
    slug: Mapped[str] = mapped_column(String(41), unique=True)
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    content_version: Mapped[int] = mapped_column(Integer, default=0)
    signature_count: Mapped[int] = mapped_column(Integer, default=0)
    last_number: Mapped[int] = mapped_column(Integer, default=0)  # numbers are never reused
    created_at: Mapped[timestamp]


PETITION_ID = select(Petition.id).where(Petition.slug == bindparam("slug"))


def petition_id(session: Session | Connection, slug: str) -> int | None:
    """A petition's row id, from its slug (None before the petition has a row)."""
    return session.scalar(PETITION_ID, {"slug": slug})


class ChannelCount(Base):
    """Signatures per petition and channel, kept in step with signatures (no COUNT(*))."""

    __tablename__ = "channel_counts"

    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Supporter(Base):
    """One person, across channels; `phone` (E.164) links their SMS and WhatsApp identities."""

    __tablename__ = "supporters"

    id: Mapped[intpk]
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    created_at: Mapped[timestamp]
    # The reply budget (bot/core/budget.py), kept on the person's row, which every inbound
    # message already locks: exact across channels and processes, with or without Redis.
    # epoch seconds, newest last
    reply_times: Mapped[list[float] | None] = mapped_column(JSON(none_as_null=True))
    over_budget_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # notice sent


class Identity(Base):
    """A channel address: a phone number in E.164 or a Telegram chat id.

    An identity whose supporter was erased but who said STOP stays, without a supporter,
    as the suppression record: its address is never messaged again.
    """

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[intpk]
    supporter_id: Mapped[int | None] = mapped_column(ForeignKey("supporters.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    opted_out_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    unreachable_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_inbound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[timestamp]


class Conversation(Base):
    """Where an identity is in the conversation; `version` guards concurrent writers."""

    __tablename__ = "conversations"

    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), primary_key=True)
    step: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[timestamp] = mapped_column(index=True)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class Signature(Base):
    __tablename__ = "signatures"
    __table_args__ = (UniqueConstraint("petition_id", "supporter_id"),
                      UniqueConstraint("petition_id", "number"),
                      Index("ix_signatures_petition_signed_at", "petition_id", "signed_at"),
                      # Covering indexes for the dashboard's counts by place and referral.
                      Index("ix_signatures_petition_place", "petition_id", "nation",
                            "postcode_area"),
                      Index("ix_signatures_petition_referral", "petition_id", "referral"))

    id: Mapped[intpk]
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"))
    supporter_id: Mapped[int] = mapped_column(ForeignKey("supporters.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    postcode: Mapped[str | None] = mapped_column(String(10))
    postcode_area: Mapped[str | None] = mapped_column(String(4))
    country: Mapped[str | None] = mapped_column(String(60))
    nation: Mapped[str] = mapped_column(String(24))
    channel: Mapped[str] = mapped_column(String(16))     # "paper" for an imported one
    referral: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(80))  # a paper signature's: "Leeds march"
    consent_id: Mapped[int | None] = mapped_column(ForeignKey("consent_records.id"))
    signed_at: Mapped[timestamp]


class Subscription(Base):
    """Updates about a petition on one identity's channel (opt-in, separate from signing)."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("identity_id", "petition_id"),
                      Index("ix_subscriptions_petition", "petition_id"))

    id: Mapped[intpk]
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"))
    consent_id: Mapped[int | None] = mapped_column(ForeignKey("consent_records.id"))
    created_at: Mapped[timestamp]


class ConsentRecord(Base):
    """Evidence of a grant or withdrawal: who, what wording version, how, when."""

    __tablename__ = "consent_records"

    id: Mapped[intpk]
    supporter_id: Mapped[int] = mapped_column(ForeignKey("supporters.id"), index=True)
    petition_id: Mapped[int | None] = mapped_column(ForeignKey("petitions.id"))
    purpose: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # granted | withdrawn
    text_version: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(16))
    evidence: Mapped[str] = mapped_column(String(80))  # the provider's message id
    created_at: Mapped[timestamp]


class InboundMessage(Base):
    """Every message received, once: the (channel, provider_id) key makes replays no-ops.

    `body` is purged after the retention period; the key stays for idempotency.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("channel", "provider_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str] = mapped_column(String(80))
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"), index=True)
    body: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[timestamp] = mapped_column(index=True)
    # What the bot answered, so a provider's retry of a message whose answer was lost gets
    # the same answer again ([{"text", "options"}]); purged with `body`.
    replies: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))


__all__ = ["ChannelCount", "ConsentRecord", "Conversation", "Identity", "InboundMessage",
           "Petition", "Signature", "Subscription", "Supporter"]
