"""Staff accounts, the audit log, and supporters' voices awaiting moderation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, intpk, timestamp


class StaffUser(Base):
    """Roles: viewer reads; editor also drafts; admin also approves, sends, exports, erases."""

    __tablename__ = "staff_users"

    id: Mapped[intpk]
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[timestamp]
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    name: Mapped[str | None] = mapped_column(String(120))  # as colleagues know them
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Two-factor sign-in (TOTP): the shared secret, set up when confirmed with a first code.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[int | None] = mapped_column()  # a code is accepted once
    recovery_codes: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))  # hashes


class StaffInvite(Base):
    """A one-time link an admin passes on to a new colleague (the product sends no
    email): only its hash is kept; it ends when used or at `expires_at`."""

    __tablename__ = "staff_invites"

    id: Mapped[intpk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class StaffAddress(Base):
    """A staff member's own phone number or Telegram chat, linked by messaging the bot a
    one-time code: test sends go here, as supporters would get them."""

    __tablename__ = "staff_addresses"
    __table_args__ = (UniqueConstraint("staff_user_id", "channel"),)

    id: Mapped[intpk]
    staff_user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    linked_at: Mapped[timestamp]


class StaffLinkCode(Base):
    """A code shown in the console that links the chat it is sent from (hash only; one
    per staff member at a time; it ends when used or at `expires_at`)."""

    __tablename__ = "staff_link_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), unique=True)
    expires_at: Mapped[timestamp]


class AuditEntry(Base):
    """Who did what, when: every staff action, from the console, the CLI or a chat."""

    __tablename__ = "audit_log"

    id: Mapped[intpk]
    at: Mapped[timestamp] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(120))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Voice(Base):
    """A supporter's "why I signed": pending until moderated; shown only when approved and
    the supporter consented to publication. `flagged` marks a safeguarding concern."""

    __tablename__ = "voices"

    id: Mapped[intpk]
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"), index=True)
    supporter_id: Mapped[int | None] = mapped_column(
        ForeignKey("supporters.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    nation: Mapped[str | None] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|approved|rejected
    publish_consent: Mapped[bool] = mapped_column(default=False)
    consent_id: Mapped[int | None] = mapped_column(
        ForeignKey("consent_records.id", ondelete="SET NULL"))
    flagged: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[timestamp]
    moderated_by: Mapped[str | None] = mapped_column(String(254))
    moderated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class StaffSession(Base):
    """A console sign-in: its cookie names it, and it ends at logout or 12 hours after
    sign-in, on every process at once. Only a hash of the cookie's value is kept."""

    __tablename__ = "staff_sessions"

    id: Mapped[intpk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class RateWindow(Base):
    """Recent hits of one rate limit (a login throttle's key; the reply budget of a person
    just erased, so that erasing oneself does not refill it): a moving window kept in the
    database, so every process counts the same hits without Redis, atomically (the row is
    locked while it is read and written). Keys are keyed hashes: no email, phone or
    address here; a row not updated for a day counts nothing and is deleted."""

    __tablename__ = "rate_windows"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    hits: Mapped[list[float]] = mapped_column(JSON)  # epoch seconds, newest last
    noticed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # over-budget notice
    updated_at: Mapped[timestamp] = mapped_column(index=True)


class ApiToken(Base):
    """A staff member's key to the staff API (/api/v1): it acts with their role and name.
    Only a hash of the token is kept, so a copy of the table opens nothing; a revoked token
    stays, for the record of who had one and when it was last used."""

    __tablename__ = "api_tokens"

    id: Mapped[intpk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[timestamp]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
