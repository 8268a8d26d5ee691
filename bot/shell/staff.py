"""Staff accounts, their sign-ins, and the audit log.

Roles rank viewer < editor < admin: viewers read; editors also draft announcements and
read supporters' voices; admins also approve, send, moderate, export, erase and manage
colleagues. Passwords are stored as werkzeug scrypt hashes; an unknown email costs the same
hashing work as a wrong password, so timing does not tell which emails have accounts.

A console sign-in is a `StaffSession` row: the browser's cookie carries a random token and
the database only its hash. It ends at logout or SESSION_LIFETIME after sign-in, whatever
the activity, and every process sees that at once because each request looks it up.

Colleagues' rules, the same from the console and the command line (`by` is the admin
acting, None for the operator): nobody changes their own role or deactivates themselves,
and the last active admin stays one. Deactivating ends the person's sign-ins at once and
revokes their API tokens; changing one's own password ends their other sign-ins. Each
change is audited here, so no caller can forget to; never with a password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, exists, or_, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from bot.infra.clock import utcnow
from models import AuditEntry, StaffSession, StaffUser
from models.staff import ApiToken

ROLES = ("viewer", "editor", "admin")
MIN_PASSWORD = 12
MAX_PASSWORD = 256  # scrypt of a megabyte "password" is a denial of service
MAX_NAME = 120
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
OPERATOR = "the operator (command line)"  # the actor of what the `petitionbot` command does
_DUMMY_HASH: list[str] = []
SESSION_LIFETIME = dt.timedelta(hours=12)  # absolute, from sign-in (DESIGN §8)
SESSION_KEEP = dt.timedelta(days=1)  # ended or expired sign-ins kept this long, then deleted


class StaffError(Exception):
    """A change to staff accounts that cannot be made as asked; the message says why."""


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


def actor(by: StaffUser | None) -> str:
    """Who the audit log names for a change: the admin making it, or the operator."""
    return by.email if by is not None else OPERATOR


def has_staff(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(StaffUser.id.is_not(None)))))


def check_email(email: str) -> str:
    """The email, normalised, or StaffError if it is not one."""
    email = normalise_email(email)
    if not EMAIL.match(email) or len(email) > 254:
        raise StaffError(f"{email!r} is not an email address")
    return email


def check_role(role: str) -> str:
    if role not in ROLES:
        raise StaffError(f"role must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str, email: str) -> None:
    """StaffError unless `password` is fit for the account with this email."""
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"use a password of at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise StaffError(f"use a password of at most {MAX_PASSWORD} characters")
    if normalise_email(password) == normalise_email(email):
        raise StaffError("use a password that is not your email address")


def check_name(name: str) -> str:
    """The name as colleagues will see it (spaces tidied), or StaffError."""
    name = " ".join(name.split())
    if not name:
        raise StaffError("give your name, as colleagues know you")
    if len(name) > MAX_NAME:
        raise StaffError(f"use at most {MAX_NAME} characters for your name")
    return name


def add_staff(session: Session, email: str, role: str, password: str, now: dt.datetime,
              name: str | None = None) -> StaffUser:
    """A new account; StaffError says what is wrong with the request."""
    email = check_email(email)
    check_role(role)
    check_password(password, email)
    if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise StaffError(f"{email} already has an account")
    user = StaffUser(email=email, password_hash=hash_password(password), role=role,
                     active=True, created_at=now, password_changed_at=now,
                     name=check_name(name) if name is not None else None)
    session.add(user)
    session.flush()
    return user


def find(session: Session, email: str) -> StaffUser:
    """The account with this email (StaffError if there is none)."""
    email = normalise_email(email)
    user = session.scalar(select(StaffUser).where(StaffUser.email == email))
    if user is None:
        raise StaffError(f"{email} has no staff account")
    return user


def colleagues(session: Session) -> list[StaffUser]:
    """Every account: active ones first, then by email."""
    return list(session.scalars(select(StaffUser).order_by(StaffUser.active.desc(),
                                                           StaffUser.email)))


def password_matches(user: StaffUser, password: str) -> bool:
    return check_password_hash(user.password_hash, password[:MAX_PASSWORD])


def authenticate(session: Session, email: str, password: str) -> StaffUser | None:
    """The active account these credentials open, else None (same work either way)."""
    user = session.scalar(select(StaffUser).where(StaffUser.email == normalise_email(email)))
    if user is None or not user.active:
        check_password_hash(_dummy_hash(), password[:MAX_PASSWORD])
        return None
    return user if password_matches(user, password) else None


def change_password(session: Session, user: StaffUser, current: str, new: str,
                    now: dt.datetime, keep_token: str) -> None:
    """A staff member's own new password, the current one proving it is them. Their other
    sign-ins end; the one named by `keep_token` (theirs now) goes on."""
    if not password_matches(user, current):
        raise StaffError("your current password is not right")
    check_password(new, user.email)
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    ended = end_sessions(session, user, now, keep_token=keep_token)
    audit(session, user.email, "password.change", f"staff:{user.email}",
          {"other_sign_ins_ended": ended}, now)


def rename(session: Session, user: StaffUser, name: str, now: dt.datetime) -> None:
    """A staff member's own name, as colleagues know them."""
    user.name = check_name(name)
    audit(session, user.email, "staff.name", f"staff:{user.email}", None, now)


def change_role(session: Session, target: StaffUser, role: str, by: StaffUser | None,
                now: dt.datetime) -> None:
    """Give `target` another role; never one's own, never the last active admin's."""
    check_role(role)
    if role == target.role:
        return
    if by is not None and by.id == target.id:
        raise StaffError("you cannot change your own role: ask another admin")
    if target.role == "admin":
        _keep_an_admin(session, target)
    before, target.role = target.role, role
    audit(session, actor(by), "staff.role", f"staff:{target.email}",
          {"from": before, "to": role}, now)


def deactivate(session: Session, target: StaffUser, by: StaffUser | None,
               now: dt.datetime) -> None:
    """Close an account: its sign-ins end at once and its API tokens are revoked."""
    if not target.active:
        return
    if by is not None and by.id == target.id:
        raise StaffError("you cannot deactivate your own account: ask another admin")
    if target.role == "admin":
        _keep_an_admin(session, target)
    target.active = False
    ended = end_sessions(session, target, now)
    revoked = rows_changed(session.execute(
        update(ApiToken).where(ApiToken.staff_user_id == target.id,
                               ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)))
    audit(session, actor(by), "staff.deactivate", f"staff:{target.email}",
          {"sign_ins_ended": ended, "tokens_revoked": revoked}, now)


def reactivate(session: Session, target: StaffUser, by: StaffUser | None,
               now: dt.datetime) -> None:
    """Open a closed account again (its old API tokens stay revoked)."""
    if target.active:
        return
    target.active = True
    audit(session, actor(by), "staff.reactivate", f"staff:{target.email}", None, now)


def _keep_an_admin(session: Session, leaving: StaffUser) -> None:
    """StaffError if `leaving` is the only active admin. The admins' rows stay locked
    (PostgreSQL) until the change commits, so two admins demoting each other at once
    cannot both succeed."""
    admins = session.scalars(select(StaffUser.id).where(
        StaffUser.role == "admin", StaffUser.active.is_(True)).with_for_update()).all()
    if list(admins) == [leaving.id]:
        raise StaffError(f"{leaving.email} is the last active admin: make someone else an "
                         "admin first")


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
    user.last_login_at = now
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


def end_sessions(session: Session, user: StaffUser, now: dt.datetime,
                 keep_token: str | None = None) -> int:
    """End every open sign-in of `user` (but the one `keep_token` names); how many."""
    ending = update(StaffSession).where(StaffSession.staff_user_id == user.id,
                                        StaffSession.ended_at.is_(None))
    if keep_token is not None:
        ending = ending.where(StaffSession.token_hash != token_hash(keep_token))
    return rows_changed(session.execute(ending.values(ended_at=now)))


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE changed."""
    return cast(CursorResult[Any], result).rowcount


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


__all__ = ["OPERATOR", "ROLES", "SESSION_LIFETIME", "StaffError", "actor", "add_staff",
           "audit", "authenticate", "change_password", "change_role", "check_email",
           "check_name", "check_password", "check_role", "close_session", "colleagues",
           "deactivate", "end_sessions", "find", "fingerprint", "has_staff",
           "hash_password", "may", "normalise_email", "open_session", "password_matches",
           "reactivate", "rename", "rows_changed", "session_user", "token_hash"]
