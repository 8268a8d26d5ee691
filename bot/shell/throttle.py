"""The staff login throttle, kept in the database (`rate_windows`) instead of Redis.

Why the database: the count must be exact across threads and processes (a burst of
guesses at once must not slip past it), and it must not depend on Redis, which may be
down (DESIGN §8: staff can still log in). Each key's recent hits live in one row; a
transaction locks the rows it needs (PostgreSQL: INSERT ... ON CONFLICT DO NOTHING,
then SELECT ... FOR UPDATE, in key order so two logins cannot deadlock; SQLite: every
transaction already holds the database's write lock, models/db.py), counts one attempt
with `bot.core.budget.hit` and writes the hits back. The attempt is counted BEFORE the
password is checked, so a concurrent burst is counted hit by hit.

The keys, and why:

- per (account, client address) pair, 5 attempts per 15 minutes: the ordinary brake on
  guessing one account from one place. A stranger's failures elsewhere do not touch
  the real person's pair, so they cannot lock the real person out from their own
  address; the real person's successful login clears their pair.
- per client address, 20 attempts per 15 minutes across all accounts: one place trying
  many accounts (or many emails for one). It only ever locks out that address.
- per account, 50 attempts per hour across all addresses: a backstop against guessing
  spread over many addresses. It is the one limit a stranger could use against the real
  person, so it is ten times the pair's and lasts an hour at most, and it never holds
  back a device the person has signed in on:
- per device, 5 attempts per 15 minutes, INSTEAD of the three above: an attempt from a
  browser that carries a valid device cookie for the account (OWASP's "device cookies":
  signed, given at each sign-in, webhooks/console/auth.py). So a stranger guessing from
  anywhere else cannot lock the real person out, and a stolen cookie buys a thief no
  more guesses than the pair's brake allows.

A successful login does not count against the address and account limits (its hit is
taken back): they bound guessing, not staff who know their password.

Keys are keyed hashes (HMAC with the app's secret) of the email and address, so the
table holds no email or address and its keys cannot be reversed by hashing guesses.
Rows not updated for a day (longer than any window) are deleted as logins go by.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.core.budget import hit
from models import RateWindow
from models.db import is_postgres

KEEP = dt.timedelta(days=1)  # a row this stale counts nothing: delete it
SWEEP_BATCH = 500            # at most this many stale rows per login, to stay short
LOCK_ROUNDS = 5              # a row deleted under us by a sweep is created again


@dataclass(frozen=True)
class Limit:
    name: str
    limit: int       # attempts ...
    window: float    # ... per this many seconds


PAIR = Limit("login-pair", 5, 15 * 60)
ADDRESS = Limit("login-address", 20, 15 * 60)
ACCOUNT = Limit("login-account", 50, 60 * 60)
DEVICE = Limit("login-device", 5, 15 * 60)


@dataclass(frozen=True)
class LoginKeys:
    """The windows one login attempt counts against: its device's alone, from a device
    the account has signed in on, else the other three."""

    pair: str
    address: str
    account: str
    device: str | None = None

    @classmethod
    def of(cls, secret: str | bytes, email: str, address: str,
           device: str | None = None) -> LoginKeys:
        """`device`: the id a valid device cookie for this account carries, if any."""
        return cls(pair=key(PAIR.name, secret, email, address),
                   address=key(ADDRESS.name, secret, address),
                   account=key(ACCOUNT.name, secret, email),
                   device=None if device is None else key(DEVICE.name, secret, email, device))

    def checks(self) -> list[tuple[str, Limit]]:
        # Read at call time, so a deployment (or a test) may change the limits.
        if self.device is not None:
            return [(self.device, DEVICE)]
        return [(self.pair, PAIR), (self.address, ADDRESS), (self.account, ACCOUNT)]


def key(name: str, secret: str | bytes, *parts: str) -> str:
    """A rate window's key: its name and a keyed hash of what it counts (at most 80), so
    the table holds no email, phone number or address and no guess can be checked."""
    raw = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(raw, "\x00".join((name, *parts)).encode(), hashlib.sha256)
    return f"{name}:{digest.hexdigest()[:48]}"


def attempt(session: Session, checks: Sequence[tuple[str, Limit]], now: dt.datetime) -> bool:
    """Count one attempt against every key, if every one has room; else count nothing.

    Call inside a transaction and commit it before the password is checked: the rows stay
    locked until then, so concurrent attempts are counted one after another.
    """
    at = now.timestamp()
    rows = _locked(session, [k for k, _ in checks], now)
    verdicts = {k: hit(rows[k], at, limit.limit, limit.window) for k, limit in checks}
    allowed = all(ok for ok, _ in verdicts.values())
    for k, (ok, kept) in verdicts.items():
        # Refused: nothing is counted anywhere (only the expired hits are dropped).
        _write(session, k, kept if allowed or not ok else kept[:-1], now)
    sweep(session, now, exclude=list(rows))
    return allowed


def login_attempt(session: Session, keys: LoginKeys, now: dt.datetime) -> bool:
    return attempt(session, keys.checks(), now)


def login_succeeded(session: Session, keys: LoginKeys, attempted: dt.datetime,
                    now: dt.datetime) -> None:
    """The password was right: forget the pair's failures (or the device's), and take back
    the attempt counted at `attempted` from the address and account windows."""
    if keys.device is not None:
        _locked(session, [keys.device], now)
        _write(session, keys.device, [], now)
        return
    at = attempted.timestamp()
    rows = _locked(session, [keys.pair, keys.address, keys.account], now)
    _write(session, keys.pair, [], now)
    for k in (keys.address, keys.account):
        hits = list(rows[k])
        if at in hits:
            hits.remove(at)
            _write(session, k, hits, now)


def sweep(session: Session, now: dt.datetime, exclude: Sequence[str] = ()) -> int:
    """Delete up to SWEEP_BATCH rows not updated for a day (they count nothing)."""
    stale = (select(RateWindow.key).where(RateWindow.updated_at < now - KEEP)
             .order_by(RateWindow.updated_at).limit(SWEEP_BATCH))
    if exclude:
        stale = stale.where(RateWindow.key.not_in(list(exclude)))
    if is_postgres(session):
        # Never wait for a row another login holds (nor deadlock with it): skip it.
        stale = stale.with_for_update(skip_locked=True)
    keys = list(session.scalars(stale))
    if keys:
        session.execute(delete(RateWindow).where(RateWindow.key.in_(keys)))
    return len(keys)


def _locked(session: Session, keys: Sequence[str], now: dt.datetime) -> dict[str, list[float]]:
    """Each key's hits, its row created if need be and locked until the transaction ends."""
    wanted = sorted(set(keys))  # one order for everyone: no deadlock between two logins
    found: dict[str, list[float]] = {}
    dialect = postgresql if is_postgres(session) else sqlite
    for _ in range(LOCK_ROUNDS):
        missing = [k for k in wanted if k not in found]
        session.execute(dialect.insert(RateWindow).values(
            [{"key": k, "hits": [], "updated_at": now} for k in missing])
            .on_conflict_do_nothing(index_elements=["key"]))
        query = (select(RateWindow.key, RateWindow.hits).where(RateWindow.key.in_(missing))
                 .order_by(RateWindow.key).with_for_update())
        found.update({k: list(hits or []) for k, hits in session.execute(query).all()})
        if len(found) == len(wanted):
            return found
        # A concurrent sweep deleted a stale row between our insert and our lock (only on
        # PostgreSQL, where a locked-then-deleted row is skipped): create it again.
    raise RuntimeError("rate window rows kept disappearing")


def _write(session: Session, key_: str, hits: list[float], now: dt.datetime) -> None:
    session.execute(update(RateWindow).where(RateWindow.key == key_)
                    .values(hits=hits, updated_at=now))


__all__ = ["ACCOUNT", "ADDRESS", "DEVICE", "PAIR", "Limit", "LoginKeys", "attempt", "key",
           "login_attempt", "login_succeeded", "sweep"]
