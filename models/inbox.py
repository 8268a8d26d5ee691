"""The staff inbox: conversations a person answers, their messages, follow-ups, saved replies.

A supporter has at most one open conversation, whatever channel they write on: their next
message joins it, or opens a new one once it is closed. `open_supporter_id` holds the
supporter's id while the conversation is open and NULL once closed, and is unique: NULLs
never collide, so the database itself keeps the rule on SQLite and PostgreSQL alike.
Replies go to the identity the supporter last wrote from (`identity_id`).

Everything here is the supporter's personal data: erasure deletes it (the rows follow the
supporter by ON DELETE CASCADE), and retention removes closed conversations after
`[retention] inbox_days`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UTCDateTime, intpk, timestamp


class InboxConversation(Base):
    """Status open | closed; `waiting_since` is the oldest supporter message not yet
    answered by staff (NULL: nothing waits); `told` says the supporter has been told, in
    this conversation, that a person reads these messages."""

    __tablename__ = "inbox_conversations"
    __table_args__ = (Index("ix_inbox_conversations_status_flagged", "status", "flagged",
                            "waiting_since"),)

    id: Mapped[intpk]
    supporter_id: Mapped[int] = mapped_column(
        ForeignKey("supporters.id", ondelete="CASCADE"), index=True)
    open_supporter_id: Mapped[int | None] = mapped_column(BigId, unique=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    flagged: Mapped[bool] = mapped_column(default=False)
    told: Mapped[bool] = mapped_column(default=False)
    assigned_to: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"))
    opened_at: Mapped[timestamp]
    last_message_at: Mapped[timestamp]
    waiting_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_reply_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    closed_by: Mapped[str | None] = mapped_column(String(254))


class InboxMessage(Base):
    """One entry in a conversation. Kind: `in` (the supporter's words), `staff` (a reply,
    sent through the outbox: its delivery row carries its state), `note` (staff only,
    never sent). The bot's own replies are read from the inbound message (`provider_id`)."""

    __tablename__ = "inbox_messages"
    __table_args__ = (Index("ix_inbox_messages_conversation", "conversation_id", "id"),)

    id: Mapped[intpk]
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("inbox_conversations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[timestamp]
    flagged: Mapped[bool] = mapped_column(default=False)
    provider_id: Mapped[str | None] = mapped_column(String(80))
    staff_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"))
    staff_name: Mapped[str | None] = mapped_column(String(254))


class FollowUp(Base):
    """What was done about a flagged message: who, when, what."""

    __tablename__ = "inbox_follow_ups"

    id: Mapped[intpk]
    message_id: Mapped[int] = mapped_column(
        ForeignKey("inbox_messages.id", ondelete="CASCADE"), index=True)
    staff_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"))
    staff_name: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(Text)
    at: Mapped[timestamp]


class SavedReply(Base):
    """A reply staff reuse; no supporter's data."""

    __tablename__ = "inbox_saved_replies"

    id: Mapped[intpk]
    title: Mapped[str] = mapped_column(String(80))
    text: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[timestamp]


__all__ = ["FollowUp", "InboxConversation", "InboxMessage", "SavedReply"]
