"""Staff API tokens: a staff member's key to /api/v1, acting with their role and name.

A token is shown once, when it is made; the database keeps only its SHA-256 hash, so a
copy of the table opens nothing. Revoking keeps the row (who had a token, when it was last
used). A token opens nothing once revoked or once its staff member is made inactive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.shell.staff import StaffError, normalise_email
from models import StaffUser
from models.staff import ApiToken

PREFIX = "pbt_"  # a token is recognisable in a leaked file or a secret scanner
MAX_NAME = 80
USED_EVERY = dt.timedelta(minutes=1)  # last_used_at is written at most this often


@dataclass(frozen=True)
class Issued:
    """A new token: `secret` is the only copy; it is not stored."""

    id: int
    name: str
    secret: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(session: Session, user: StaffUser, name: str, now: dt.datetime) -> Issued:
    """A new token for `user`, named (e.g. "CRM sync") so that it can be told apart."""
    name = " ".join(name.split())[:MAX_NAME] or "API token"
    if not user.active:
        raise StaffError(f"{user.email} is not active")
    secret = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(token_hash=token_hash(secret), staff_user_id=user.id, name=name,
                   created_at=now)
    session.add(row)
    session.flush()
    return Issued(row.id, name, secret)


def issue_for_email(session: Session, email: str, name: str, now: dt.datetime) -> Issued:
    """A new token for the staff member with this email (StaffError if there is none)."""
    email = normalise_email(email)
    user = session.scalar(select(StaffUser).where(StaffUser.email == email))
    if user is None:
        raise StaffError(f"{email} has no staff account (petitionbot staff add {email} "
                         "--role ...)")
    return issue(session, user, name, now)


def holder(session: Session, token: str, now: dt.datetime) -> StaffUser | None:
    """The active staff member this token belongs to, if it is not revoked; else None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    found = session.execute(
        select(StaffUser, ApiToken.id, ApiToken.last_used_at)
        .join(ApiToken, ApiToken.staff_user_id == StaffUser.id)
        .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None),
               StaffUser.active.is_(True))).first()
    if found is None:
        return None
    user, token_id, last_used = found
    if last_used is None or now - last_used >= USED_EVERY:  # not a write on every call
        session.execute(update(ApiToken).where(ApiToken.id == token_id)
                        .values(last_used_at=now))
    return user


def tokens_of(session: Session, user_id: int | None = None) -> list[ApiToken]:
    """Tokens, newest first: one staff member's, or everyone's (None)."""
    query = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if user_id is not None:
        query = query.where(ApiToken.staff_user_id == user_id)
    return list(session.scalars(query))


def revoke(session: Session, token_id: int, now: dt.datetime,
           user_id: int | None = None) -> ApiToken | None:
    """Revoke a token (only `user_id`'s, when given); the token, or None if there is no
    such token (of theirs). Revoking one already revoked changes nothing."""
    row = session.get(ApiToken, token_id)
    if row is None or (user_id is not None and row.staff_user_id != user_id):
        return None
    if row.revoked_at is None:
        row.revoked_at = now
    return row


__all__ = ["PREFIX", "Issued", "holder", "issue", "issue_for_email", "revoke", "token_hash",
           "tokens_of"]
