"""Staff accounts and the audit log.

Roles rank viewer < editor < admin: viewers read; editors also draft announcements and
read supporters' voices; admins also approve, send, moderate, export and erase.
Passwords are stored as werkzeug scrypt hashes; an unknown email costs the same hashing
work as a wrong password, so timing does not tell which emails have accounts.

A console sign-in is a `StaffSession` row: the browser's cookie carries a random token and
the database only its hash. It ends at logout or SESSION_LIFETIME after sign-in, whatever
the activity, and every process sees that at once because each request looks it up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from bot.infra.clock import utcnow
from models import AuditEntry, StaffSession, StaffUser

ROLES = ("viewer", "editor", "admin")
MIN_PASSWORD = 12
MAX_PASSWORD = 256  # scrypt of a megabyte "password" is a denial of service
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_DUMMY_HASH: list[str] = []
SESSION_LIFETIME = dt.timedelta(hours=12)  # absolute, from sign-in (DESIGN §8)
SESSION_KEEP = dt.timedelta(days=1)  # ended or expired sign-ins kept this long, then deleted


class StaffError(Exception):
    """A staff account that cannot be created as asked."""


def may(role: str, needed: str) -> bool:
    """Whether `role` includes what `needed` allows."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def fingerprint(password_hash: str) -> str:
    """A short tag of the hash: a login session ends when the password changes."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def has_staff(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(StaffUser.id.is_not(None)))))


def add_staff(session: Session, email: str, role: str, password: str,
              now: dt.datetime) -> StaffUser:
    """A new account; StaffError says what is wrong with the request."""
    email = normalise_email(email)
    if not EMAIL.match(email) or len(email) > 254:
        raise StaffError(f"{email!r} is not an email address")
    if role not in ROLES:
        raise StaffError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"use a password of at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise StaffError(f"use a password of at most {MAX_PASSWORD} characters")
    if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise StaffError(f"{email} already has an account")
    user = StaffUser(email=email, password_hash=hash_password(password), role=role,
                     active=True, created_at=now)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str,
                 now: dt.datetime) -> StaffUser | None:
    """The active account these credentials open, else None (same work either way)."""
    user = session.scalar(select(StaffUser).where(StaffUser.email == normalise_email(email)))
    password = password[:MAX_PASSWORD]
    if user is None or not user.active:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    user.last_login_at = now
    return user


def token_hash(token: str) -> str:
    """What the database keeps of a session token: a copy of the table opens no session."""
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: StaffUser, now: dt.datetime) -> str:
    """A new sign-in for `user`: its token, for the cookie (only its hash is stored).

    Sign-ins ended or expired more than SESSION_KEEP ago are deleted on the way, so the
    table holds about a day's sign-ins, not every one ever made.
    """
    cutoff = now - SESSION_KEEP
    session.execute(delete(StaffSession).where(
        or_(StaffSession.expires_at < cutoff, StaffSession.ended_at < cutoff)))
    token = secrets.token_urlsafe(32)
    session.add(StaffSession(token_hash=token_hash(token), staff_user_id=user.id,
                             created_at=now, expires_at=now + SESSION_LIFETIME))
    session.flush()
    return token


def session_user(session: Session, user_id: int, token: str,
                 now: dt.datetime) -> StaffUser | None:
    """The active account whose sign-in this token is, if that sign-in is still open
    (not ended at logout, not past its expiry); else None."""
    return session.scalar(
        select(StaffUser).join(StaffSession, StaffSession.staff_user_id == StaffUser.id)
        .where(StaffSession.token_hash == token_hash(token), StaffUser.id == user_id,
               StaffUser.active.is_(True), StaffSession.ended_at.is_(None),
               StaffSession.expires_at > now))


def close_session(session: Session, token: str, now: dt.datetime) -> None:
    """End a sign-in (logout): its cookie, wherever it was copied, opens nothing now."""
    session.execute(update(StaffSession).where(StaffSession.token_hash == token_hash(token),
                                               StaffSession.ended_at.is_(None))
                    .values(ended_at=now))


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password("not a real password, only equal work"))
    return _DUMMY_HASH[0]


def audit(session: Session, actor: str, action: str, target: str | None = None,
          detail: dict[str, Any] | None = None, now: dt.datetime | None = None) -> None:
    """Record a staff action; `detail` must hold no personal data in full."""
    session.add(AuditEntry(at=now or utcnow(), actor=actor[:254],
                           action=action[:64], target=target[:120] if target else None,
                           detail=detail))


__all__ = ["ROLES", "SESSION_LIFETIME", "StaffError", "add_staff", "audit", "authenticate",
           "close_session", "fingerprint", "has_staff", "hash_password", "may",
           "normalise_email", "open_session", "session_user", "token_hash"]
