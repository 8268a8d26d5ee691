"""Two-factor sign-in: a code from an authenticator app (TOTP, RFC 6238, via pyotp) after
the password, or one of ten one-time recovery codes.

Rules:
- Setting up keeps a new secret on the account, unconfirmed; two-factor is on only once a
  first code from the app confirms it (so a half-finished set-up locks nobody out). Ten
  recovery codes are made then and shown once; only their hashes are kept.
- A code is good for its 30-second step and the one either side (WINDOW), and only once:
  the last step used is kept, and an earlier or equal step is refused. The account's row is
  locked (PostgreSQL) while a code is checked, so one code sent twice at once is used once.
- A recovery code works once; using one is audited with how many are left.
- Admins must use two-factor when config.toml says `[console] admin_two_factor = true`
  (the default); others may turn it off with their password and a code. The operator can
  reset it from the command line for someone locked out.
Audit entries never hold the secret or any code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

import pyotp
from sqlalchemy.orm import Session

from bot.infra.config import Console
from bot.shell.staff import StaffError, actor, audit, end_sessions, password_matches
from models import StaffUser

WINDOW = 1  # steps either side of now: clocks a little apart still agree
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
RECOVERY_GROUPS = (4, 4, 4)  # xxxx-xxxx-xxxx: about 59 bits each


class TwoFactorError(StaffError):
    """A two-factor step that cannot be taken as asked; the message says why."""


def is_on(user: StaffUser) -> bool:
    return user.totp_confirmed_at is not None and user.totp_secret is not None


def required(console: Console, role: str) -> bool:
    """Whether someone with `role` must sign in with a code."""
    return role == "admin" and console.admin_two_factor


def setup_secret(user: StaffUser) -> str:
    """The secret the set-up page shows: the one already waiting for its first code (a
    reload shows the same QR code), else a new one."""
    if is_on(user):
        raise TwoFactorError("two-factor sign-in is already on")
    if user.totp_secret is None:
        user.totp_secret = pyotp.random_base32()
    return user.totp_secret


def provisioning_uri(user: StaffUser, secret: str, issuer: str) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)


def confirm(session: Session, user: StaffUser, code: str, now: dt.datetime) -> list[str]:
    """Turn two-factor on with a first code from the app; the recovery codes, shown once."""
    session.refresh(user, with_for_update=True)
    if is_on(user):
        raise TwoFactorError("two-factor sign-in is already on")
    step = _app_step(user, code, now)
    if step is None:
        raise TwoFactorError("that code is not right: type the 6 digits your app shows now")
    user.totp_last_step = step
    user.totp_confirmed_at = now
    codes = _new_recovery_codes(user)
    audit(session, user.email, "two_factor.on", f"staff:{user.email}", None, now)
    return codes


def check(session: Session, user: StaffUser, code: str, now: dt.datetime) -> bool:
    """Whether `code` (from the app, or a recovery code) is right for `user` now; a code
    that is right is used up."""
    session.refresh(user, with_for_update=True)
    if not is_on(user):
        return False
    cleaned = "".join(code.split())
    if cleaned.isdigit():
        step = _app_step(user, cleaned, now)
        if step is None:
            return False
        user.totp_last_step = step
        return True
    return _use_recovery_code(session, user, cleaned, now)


def turn_off(session: Session, user: StaffUser, password: str, code: str,
             console: Console, now: dt.datetime) -> None:
    """Turn two-factor off, with the password and a code; not where the role requires it."""
    if required(console, user.role):
        raise TwoFactorError("two-factor sign-in is required for admins here, so it stays on")
    if not password_matches(user, password):
        raise TwoFactorError("your password is not right")
    if not check(session, user, code, now):
        raise TwoFactorError("that code is not right")
    _clear(user)
    audit(session, user.email, "two_factor.off", f"staff:{user.email}", None, now)


def regenerate(session: Session, user: StaffUser, password: str,
               now: dt.datetime) -> list[str]:
    """Ten new recovery codes (the old ones stop working), with the password."""
    if not is_on(user):
        raise TwoFactorError("turn two-factor sign-in on first")
    if not password_matches(user, password):
        raise TwoFactorError("your password is not right")
    codes = _new_recovery_codes(user)
    audit(session, user.email, "recovery_codes.regenerate", f"staff:{user.email}", None, now)
    return codes


def reset(session: Session, user: StaffUser, by: StaffUser | None, now: dt.datetime) -> None:
    """Two-factor off for someone locked out (the operator's way back in); their sign-ins
    end, and an admin who must use it is asked to set it up again at the next sign-in."""
    _clear(user)
    ended = end_sessions(session, user, now)
    audit(session, actor(by), "two_factor.reset", f"staff:{user.email}",
          {"sign_ins_ended": ended}, now)


def recovery_codes_left(user: StaffUser) -> int:
    return len(user.recovery_codes or [])


def _app_step(user: StaffUser, code: str, now: dt.datetime) -> int | None:
    """The step whose code this is, within WINDOW of now and after the last one used."""
    if user.totp_secret is None or not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(user.totp_secret)
    current = totp.timecode(now)
    last = user.totp_last_step if user.totp_last_step is not None else -1
    for step in range(current - WINDOW, current + WINDOW + 1):
        if step > last and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _use_recovery_code(session: Session, user: StaffUser, code: str,
                       now: dt.datetime) -> bool:
    digest = _hash(code)
    kept = list(user.recovery_codes or [])
    if not any(hmac.compare_digest(digest, h) for h in kept):
        return False
    kept.remove(digest)
    user.recovery_codes = kept  # a new list: the JSON column sees the change
    audit(session, user.email, "recovery_code.use", f"staff:{user.email}",
          {"left": len(kept)}, now)
    return True


def _new_recovery_codes(user: StaffUser) -> list[str]:
    codes = ["-".join("".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(size))
                      for size in RECOVERY_GROUPS) for _ in range(RECOVERY_CODES)]
    user.recovery_codes = [_hash(c) for c in codes]
    return codes


def _hash(code: str) -> str:
    """A recovery code's hash, whatever spacing, dashes or capitals it was typed with."""
    cleaned = "".join(c for c in code.lower() if c in RECOVERY_ALPHABET)
    return hashlib.sha256(cleaned.encode()).hexdigest()


def _clear(user: StaffUser) -> None:
    user.totp_secret = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    user.recovery_codes = None


__all__ = ["RECOVERY_CODES", "TwoFactorError", "check", "confirm", "is_on",
           "provisioning_uri", "recovery_codes_left", "regenerate", "required", "reset",
           "setup_secret", "turn_off"]
