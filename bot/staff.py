"""Staff accounts and the audit log.

Roles rank viewer < editor < admin: viewers read; editors also draft announcements and
read supporters' voices; admins also approve, send, moderate, export and erase.
Passwords are stored as werkzeug scrypt hashes; an unknown email costs the same hashing
work as a wrong password, so timing does not tell which emails have accounts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from models import AuditEntry, StaffUser

ROLES = ("viewer", "editor", "admin")
MIN_PASSWORD = 12
MAX_PASSWORD = 256  # scrypt of a megabyte "password" is a denial of service
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_DUMMY_HASH: list[str] = []


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


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password("not a real password, only equal work"))
    return _DUMMY_HASH[0]


def audit(session: Session, actor: str, action: str, target: str | None = None,
          detail: dict[str, Any] | None = None, now: dt.datetime | None = None) -> None:
    """Record a staff action; `detail` must hold no personal data in full."""
    session.add(AuditEntry(at=now or dt.datetime.now(dt.UTC), actor=actor[:254],
                           action=action[:64], target=target[:120] if target else None,
                           detail=detail))


__all__ = ["ROLES", "StaffError", "add_staff", "audit", "authenticate", "fingerprint",
           "has_staff", "hash_password", "may", "normalise_email"]
