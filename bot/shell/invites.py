"""Invitations: how an admin brings a colleague into the console.

The product sends no email, so an invitation is a link the admin passes on
(`PUBLIC_BASE_URL/staff/invite/<token>`). The token is shown once; the database keeps only
its hash. A link works once, for LIFETIME, until revoked; the person who opens it chooses
their name and password and gets the role the admin chose. A newer invitation for the same
email replaces an older one still waiting, so only the latest link works.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.shell.staff import (
    StaffError,
    actor,
    add_staff,
    audit,
    check_email,
    check_role,
    rows_changed,
    token_hash,
)
from models import StaffUser
from models.staff import StaffInvite

LIFETIME = dt.timedelta(days=7)
MAX_TOKEN = 100  # a longer "token" in a URL is no token of ours; not even hashed


class Unusable(StrEnum):
    """Why an invitation link opens nothing, in the words its page uses."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


class InviteUnusable(StaffError):
    def __init__(self, why: Unusable) -> None:
        self.why = why
        super().__init__(f"this invitation is {why.value}")


@dataclass(frozen=True)
class Invitation:
    """A new invitation; `token` is the only copy of the link's secret."""

    invite: StaffInvite
    token: str


def invite(session: Session, email: str, role: str, by: StaffUser | None,
           now: dt.datetime) -> Invitation:
    """An invitation for `email` to join with `role`, refused if the email has an account."""
    email = check_email(email)
    check_role(role)
    existing = session.scalar(select(StaffUser).where(StaffUser.email == email))
    if existing is not None and existing.active:
        raise StaffError(f"{email} already has an account")
    if existing is not None:
        raise StaffError(f"{email} has a deactivated account: reactivate it instead")
    replaced = rows_changed(session.execute(
        update(StaffInvite).where(StaffInvite.email == email, StaffInvite.used_at.is_(None),
                                  StaffInvite.revoked_at.is_(None),
                                  StaffInvite.expires_at > now)
        .values(revoked_at=now)))
    token = secrets.token_urlsafe(32)
    row = StaffInvite(token_hash=token_hash(token), email=email, role=role,
                      created_by=by.id if by is not None else None, created_at=now,
                      expires_at=now + LIFETIME)
    session.add(row)
    session.flush()
    audit(session, actor(by), "invite.create", f"staff:{email}",
          {"role": role, "invite": row.id, "replaces": replaced or None}, now)
    return Invitation(row, token)


def pending(session: Session, now: dt.datetime) -> list[StaffInvite]:
    """Invitations that can still be used, newest first."""
    return list(session.scalars(
        select(StaffInvite).where(StaffInvite.used_at.is_(None),
                                  StaffInvite.revoked_at.is_(None),
                                  StaffInvite.expires_at > now)
        .order_by(StaffInvite.created_at.desc(), StaffInvite.id.desc())))


def usable(session: Session, token: str, now: dt.datetime,
           lock: bool = False) -> StaffInvite:
    """The invitation this link's token opens, or InviteUnusable saying why not."""
    if not token or len(token) > MAX_TOKEN:
        raise InviteUnusable(Unusable.UNKNOWN)
    query = select(StaffInvite).where(StaffInvite.token_hash == token_hash(token))
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise InviteUnusable(Unusable.UNKNOWN)
    if found.used_at is not None:
        raise InviteUnusable(Unusable.USED)
    if found.revoked_at is not None:
        raise InviteUnusable(Unusable.REVOKED)
    if found.expires_at <= now:
        raise InviteUnusable(Unusable.EXPIRED)
    return found


def accept(session: Session, token: str, name: str, password: str,
           now: dt.datetime) -> StaffUser:
    """The account an invitation makes, with the name and password its person chose. The
    invitation's row is locked (PostgreSQL), so two tabs cannot both use one link."""
    found = usable(session, token, now, lock=True)
    user = add_staff(session, found.email, found.role, password, now, name=name)
    found.used_at = now
    audit(session, user.email, "invite.accept", f"staff:{user.email}",
          {"role": user.role, "invite": found.id}, now)
    return user


def revoke(session: Session, invite_id: int, by: StaffUser | None,
           now: dt.datetime) -> StaffInvite | None:
    """Withdraw an invitation still waiting; None if there is no such invitation waiting."""
    found = session.get(StaffInvite, invite_id)
    if found is None or found.used_at is not None or found.revoked_at is not None:
        return None
    found.revoked_at = now
    audit(session, actor(by), "invite.revoke", f"staff:{found.email}",
          {"invite": found.id}, now)
    return found


__all__ = ["LIFETIME", "Invitation", "InviteUnusable", "Unusable", "accept", "invite",
           "pending", "revoke", "usable"]
