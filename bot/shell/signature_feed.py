"""The signatures feed (DESIGN §9): a petition's current signatures in the order they were
made, a page at a time, for an integration (a CRM) to copy and keep up to date.

Why a cursor on the signature's `number` neither skips nor repeats a signature, even while
people sign and withdraw:
- A signature takes its number in the transaction that inserts it, from the petition row's
  `last_number + 1` (bot/shell/effects.py, COUNT_SIGNATURE). That UPDATE holds the row's
  lock until the transaction ends, so for one petition the signing transactions commit one
  after the other, in number order; one that rolls back hands its number to the next.
  PostgreSQL makes a transaction visible before it lets its locks go, so a snapshot that
  sees number n sees every smaller number that still exists. On SQLite one writer at a
  time gives the same order.
- So a page ending at number n leaves nothing behind it: whatever commits later has a
  number above n and comes on a later page. The row id would not do: PostgreSQL assigns
  ids at insert, before commit, so ids commit out of order and a cursor on them could step
  over an id committed late. Nor would `signed_at`, a clock reading taken before commit.
- Withdrawing (erasure) deletes the row, and numbers are never reused (`last_number` only
  grows): a withdrawn signature is absent from every page read after, and its number is
  never given to anyone else.

The cursor is opaque to callers: base64 of "<petition slug>:<number>", so that a cursor
from one petition's feed is refused on another's rather than silently mis-read.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, select

from models.tables import signatures

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
BATCH = 500  # rows fetched from the database, and handed on, at a time
MAX_NUMBER = 2**63 - 1
LIMIT = re.compile(r"[0-9]{1,6}")
CURSOR = re.compile(r"(?P<slug>.+):(?P<number>[0-9]{1,19})")

# What each item carries, in this order (`supporter` links it to the events' ids; `source`
# says where a paper signature was collected, and is null for the others).
FIELDS = ("id", "number", "supporter", "name", "postcode", "country", "nation", "channel",
          "source", "referral", "signed_at")
PAGE = (select(signatures.c.id, signatures.c.number, signatures.c.supporter_id,
               signatures.c.name, signatures.c.postcode, signatures.c.country,
               signatures.c.nation, signatures.c.channel, signatures.c.source,
               signatures.c.referral, signatures.c.signed_at)
        .order_by(signatures.c.number))


class Invalid(ValueError):
    """A cursor or limit that cannot be used; `field` names the query parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def cursor(slug: str, number: int) -> str:
    """The opaque cursor for "after signature `number` of petition `slug`"."""
    return base64.urlsafe_b64encode(f"{slug}:{number}".encode()).decode().rstrip("=")


def position(slug: str, text: str | None) -> int:
    """The number a cursor of `slug`'s feed stands for (0, the start, for none)."""
    if text is None:
        return 0
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_",
                                   validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid("after", "after: not a cursor this feed gave (pass a page's "
                               "`next` or `resume` as it came)") from None
    found = CURSOR.fullmatch(decoded)
    if found is None or int(found["number"]) > MAX_NUMBER:
        raise Invalid("after", "after: not a cursor this feed gave (pass a page's "
                               "`next` or `resume` as it came)")
    if found["slug"] != slug:
        raise Invalid("after", "after: this cursor belongs to another petition's feed")
    return int(found["number"])


def page_size(text: str | None) -> int:
    """The `limit` asked for: a whole number from 1 to MAX_LIMIT (DEFAULT_LIMIT if none)."""
    if text is None:
        return DEFAULT_LIMIT
    if not LIMIT.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise Invalid("limit", f"limit: a whole number from 1 to {MAX_LIMIT}")
    return int(text)


class Page:
    """One page of a petition's feed, read from the database as it is iterated, in batches
    of items; once iterated, `next` is the following page's cursor (None: this was the
    end, for now) and `resume` where to ask again later for signatures made since."""

    def __init__(self, connection: Connection, slug: str, petition_id: int | None,
                 after: int, limit: int) -> None:
        self.connection, self.slug, self.petition_id = connection, slug, petition_id
        self.after, self.limit = after, limit
        self.last: int | None = None  # the number of the last item handed on
        self.more = False

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        if self.petition_id is None:  # no row yet: nobody has signed
            return
        query = (PAGE.where(signatures.c.petition_id == self.petition_id,
                            signatures.c.number > self.after)
                 .limit(self.limit + 1)  # one more than asked: is there a next page?
                 .execution_options(yield_per=BATCH))
        left = self.limit
        for rows in self.connection.execute(query).partitions():
            if len(rows) > left:
                self.more = True
                rows = rows[:left]
            if not rows:
                break
            left -= len(rows)
            self.last = rows[-1].number
            yield [_item(row) for row in rows]

    @property
    def next(self) -> str | None:
        return cursor(self.slug, self.last) if self.more and self.last is not None else None

    @property
    def resume(self) -> str | None:
        at = self.last if self.last is not None else self.after
        return cursor(self.slug, at) if at else None


def _item(row: Any) -> dict[str, Any]:
    item = dict(zip(FIELDS, row, strict=True))
    item["signed_at"] = row.signed_at.isoformat()
    return item


__all__ = ["DEFAULT_LIMIT", "FIELDS", "MAX_LIMIT", "Invalid", "Page", "cursor", "page_size",
           "position"]
