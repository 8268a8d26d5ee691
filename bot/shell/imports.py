"""Imports from CSV files: the suppression list, and signatures collected on paper.

One code path for the command line, the console and the staff API (`run`), so every rule
is decided here:
- The file is UTF-8 CSV (a spreadsheet's "CSV UTF-8"; a byte-order mark is fine) whose first
  line names the columns, in any case and spelling listed in HEADERS; other columns are
  ignored. Anything else is refused as a whole (`Refused`), before a row is looked at.
- Each row is checked as the bot checks what a supporter types (bot/core/phones.py,
  inputs.py, postcodes.py). A bad row is reported with its line in the file (the header is
  line 1; a quoted cell may span lines: a row is named by the line it starts on) and a
  reason. If any row is bad, nothing of the file is kept.
- A dry run answers exactly what the import would do, and changes nothing.
- A file is imported once per kind (and petition): the same bytes again are refused.
- Nothing of an existing person changes: no consent record, opt-in time, subscription or
  STOP is written or rewritten. A suppressed number is simply never messaged
  (bot/shell/broadcast.py's `suppressed`, which the worker checks before every send and
  every announcement's audience leaves out).
  Replying to a message a suppressed person sent is not messaging them unprompted: the bot
  still answers them; staff replies, which go through the outbox later, do not go.
- A paper signature is a signature like any other (channel "paper", its `source`), on a
  supporter of its own with no phone and no channel, so it can never be messaged. Its
  number is taken as the bot takes one (bot/shell/effects.py's COUNT_SIGNATURE, here for
  the whole file in one statement): under the petition's row lock, held to the commit, so
  the signatures feed's ordering holds (bot/shell/signature_feed.py).

Reading the file, checking its rows against the database and planning what to add all
happen on models.db.long_read, which takes no write lock: on SQLite a million numbers are
checked while inbound messages go on being written. A dry run ends there. The write
transaction then holds the inserts, and re-checks only what another import may have
changed meanwhile: the file imported before, paper signatures imported since (then it
checks again, inside), numbers listed since (inserted with conflicts ignored, and the
counts corrected). Writes run one at a time (an advisory lock on PostgreSQL; SQLite has one
writer), so two copies of one file cannot both pass the "imported once" check.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    FromClause,
    Integer,
    String,
    bindparam,
    cast,
    column,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeEngine

from bot.core.inputs import clean, storable, valid_name
from bot.core.phones import normalise_phone
from bot.core.postcodes import nation_of, normalise_postcode, postcode_area
from bot.infra.config import Config, Petition
from bot.shell import events
from bot.shell.broadcast import PHONE_CHANNELS, milestone_drafts
from bot.shell.petition_content import live_petition
from bot.shell.staff import audit
from models.base import UTCDateTime
from models.db import is_postgres, long_read
from models.sql import insert_ignore
from models.supporters import ChannelCount, petition_id
from models.supporters import Petition as PetitionRow
from models.tables import (
    channel_counts,
    event_receivers,
    identities,
    import_batches,
    petitions,
    signatures,
    supporters,
    suppressions,
)

SUPPRESSIONS, SIGNATURES = "suppressions", "signatures"
KINDS = (SUPPRESSIONS, SIGNATURES)
PAPER = "paper"
MAX_BYTES = 16 * 1024 * 1024  # about a million numbers
# Paper signatures are numbered under the petition's row lock, held to the commit, and
# signing that petition by message waits meanwhile: 25,000 hold it for under half a second,
# about 1 s (SQLite) to 3 s (PostgreSQL) when a receiver wants signature.created. A larger
# pile is imported in parts.
MAX_PAPER_ROWS = 25_000
MAX_SOURCE = 80
MAX_LISTED = 1000  # bad rows listed; `bad_rows` counts every one
CHUNK = 1000  # values per IN (...) list, rows per INSERT
SUPPRESSIONS_CHUNK = 50_000  # numbers per INSERT (one JSON array)
PAPER_CHUNK = 20_000  # paper signatures per INSERT (one JSON array)
# A paper signature's columns as its JSON row holds them ("i": its place in the file).
PAPER_FIELDS: dict[str, TypeEngine[Any]] = {
    "i": Integer(), "supporter_id": BigInteger(), "name": String(), "postcode": String(),
    "postcode_area": String(), "nation": String(), "source": String(),
    "signed_at": UTCDateTime()}
LOCK_KEY = 16_0004  # pg_advisory_xact_lock: one import at a time (issue 16, point 4)

# The columns each kind needs, and the header spellings taken for each (compared with
# everything but letters and digits removed, in lower case: "Phone number" is phonenumber).
HEADERS: dict[str, dict[str, frozenset[str]]] = {
    SUPPRESSIONS: {"phone": frozenset({
        "phone", "phonenumber", "phoneno", "number", "mobile", "mobilenumber", "mobileno",
        "mobilephone", "telephone", "telephonenumber", "tel", "telno", "cell", "cellphone",
        "msisdn"})},
    SIGNATURES: {
        "name": frozenset({"name", "fullname", "signatory", "signatoryname"}),
        "postcode": frozenset({"postcode", "postalcode", "postcodezip"}),
        "date": frozenset({"date", "datesigned", "signed", "signedon", "signedat",
                           "signaturedate"}),
        "source": frozenset({"source", "event", "collectedat"})},
}
ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
UK_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")

# The bot's COUNT_SIGNATURE (bot/shell/effects.py) for n signatures at once: the same row
# lock, held to the commit, so numbers commit in order.
COUNT_SIGNATURES = (update(petitions).where(petitions.c.id == bindparam("p_petition"))
                    .values(signature_count=petitions.c.signature_count + bindparam("p_n"),
                            last_number=petitions.c.last_number + bindparam("p_n"))
                    .returning(petitions.c.last_number, petitions.c.signature_count))


class Refused(Exception):
    """The file (or what came with it) cannot be imported at all; nothing was kept.
    `status` is the HTTP answer it makes (400, 404, 409, 413); `field` names the input at
    fault, when there is one."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Problem:
    """A bad row: its line in the file, and why."""

    line: int
    error: str


@dataclass
class Summary:
    """What an import did, or (a dry run, or with bad rows) would have done.

    `new`: numbers added to the suppression list, or paper signatures added.
    `already`: numbers already on the list, or earlier in the same file (nothing to add).
    `matched`: numbers of people we know (a supporter's, or an SMS or WhatsApp address),
    who are from now on never messaged; for paper signatures, rows with the same name and
    postcode as someone who signed here by SMS, WhatsApp or Telegram (counted twice if
    they are one person: staff may want to look).
    """

    kind: str
    petition: str | None
    filename: str
    sha256: str
    dry_run: bool
    rows: int = 0
    new: int = 0
    already: int = 0
    matched: int = 0
    bad_rows: int = 0
    errors: list[Problem] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    first_number: int | None = None
    last_number: int | None = None
    id: int | None = None  # the ImportBatch's, once kept

    @property
    def kept(self) -> bool:
        return self.id is not None

    def bad(self, line: int, error: str) -> None:
        self.bad_rows += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append(Problem(line, error))

    def counts(self) -> dict[str, Any]:
        """What the ImportBatch and the audit log keep: counts, no personal data."""
        kept: dict[str, Any] = {"rows": self.rows, "new": self.new, "already": self.already,
                                "matched": self.matched}
        if self.kind == SIGNATURES:
            kept.update(sources=dict(self.sources), first_number=self.first_number,
                        last_number=self.last_number)
        return kept

    def lines(self) -> list[str]:
        """The summary in words, for the command line."""
        done = "would add" if self.dry_run or self.bad_rows else "added"
        out = [f"{self.filename}: {self.rows:,} row(s)"
               + (f" for the petition {self.petition}" if self.petition else "")
               + ("; a dry run, nothing was changed" if self.dry_run else "")]
        if self.kind == SUPPRESSIONS:
            out += [f"  numbers it {done} to the suppression list: {self.new:,}",
                    f"  already on the list, or earlier in the file: {self.already:,}",
                    f"  numbers of people we know, never messaged from now on: "
                    f"{self.matched:,}"]
        else:
            numbers = (f" (numbers {self.first_number:,} to {self.last_number:,})"
                       if self.first_number is not None else "")
            out += [f"  paper signatures it {done}: {self.new:,}{numbers}"]
            out += [f"    {source}: {count:,}" for source, count in self.sources.items()]
            out += [f"  with the same name and postcode as someone who signed with the bot: "
                    f"{self.matched:,}"]
        if self.bad_rows:
            out.append(f"  bad rows: {self.bad_rows:,}, so nothing was imported")
            out += [f"    line {p.line}: {p.error}" for p in self.errors]
            if self.bad_rows > len(self.errors):
                out.append(f"    ... and {self.bad_rows - len(self.errors):,} more")
        elif self.kept:
            out.append(f"  kept as import {self.id}")
        return out

    def as_dict(self) -> dict[str, Any]:
        """The answer the API gives and the console shows."""
        numbers = None if self.first_number is None else {
            "first": self.first_number, "last": self.last_number}
        return {"id": self.id, "kind": self.kind, "petition": self.petition,
                "filename": self.filename, "sha256": self.sha256, "dry_run": self.dry_run,
                "kept": self.kept, "rows": self.rows, "new": self.new,
                "already": self.already, "matched": self.matched, "bad_rows": self.bad_rows,
                "errors": [{"line": p.line, "error": p.error} for p in self.errors],
                "sources": dict(self.sources), "numbers": numbers}


@dataclass(frozen=True)
class Row:
    """A data row: the line it starts on, and the cells of the columns the kind needs."""

    line: int
    cells: Mapping[str, str]


@dataclass(frozen=True)
class PaperSignature:
    line: int
    name: str
    postcode: str
    day: dt.date
    source: str

    @property
    def key(self) -> tuple[str, str, dt.date, str]:
        """Two rows with this equal are the same signature."""
        return (self.name.casefold(), self.postcode, self.day, self.source.casefold())


# Reading the file ---------------------------------------------------------------------------

def read_csv(data: bytes, kind: str) -> list[Row]:
    """The rows of a CSV file with the columns `kind` needs; Refused if it is not one."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Refused(f"the file is not UTF-8 text (byte {error.start + 1:,} is not): "
                      "save it from the spreadsheet as \"CSV UTF-8\"") from None
    if "\x00" in text:
        raise Refused("the file holds NUL characters: it is not a CSV text file")
    needed = HEADERS[kind]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise Refused(f"the file is empty: its first line must name the columns "
                          f"({', '.join(needed)})")
        columns = _columns(header, needed)
        rows = []
        previous = reader.line_num
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if any(cell.strip() for cell in cells):
                rows.append(Row(line, {name: cells[i] if i < len(cells) else ""
                                       for name, i in columns.items()}))
    except csv.Error as error:
        raise Refused(f"line {reader.line_num}: not CSV ({error})") from None
    if not rows:
        raise Refused("the file has no rows under its first line (the column names)")
    return rows


def _columns(header: Sequence[str], needed: Mapping[str, frozenset[str]]) -> dict[str, int]:
    """Where each needed column is in the header; Refused naming what is missing."""
    spelt = [re.sub(r"[^a-z0-9]", "", cell.strip().lower()) for cell in header]
    found: dict[str, int] = {}
    for name, spellings in needed.items():
        places = [i for i, cell in enumerate(spelt) if cell in spellings]
        if len(places) > 1:
            raise Refused(f"the file has {len(places)} columns that could be \"{name}\" "
                          f"(columns {', '.join(str(i + 1) for i in places)}): keep one")
        if places:
            found[name] = places[0]
    missing = [name for name in needed if name not in found]
    if missing:
        raise Refused(f"the file has no {' or '.join(missing)} column: its first line must "
                      f"name the columns ({', '.join(needed)})")
    return found


def parse_date(text: str) -> dt.date | None:
    """A day written YYYY-MM-DD or DD/MM/YYYY, or None."""
    text = text.strip()
    if found := ISO_DATE.fullmatch(text):
        year, month, day = (int(part) for part in found.groups())
    elif found := UK_DATE.fullmatch(text):
        day, month, year = (int(part) for part in found.groups())
    else:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


# Running an import --------------------------------------------------------------------------

def run(sessions: sessionmaker[Session], config: Config, kind: str, data: bytes, *,
        filename: str, actor: str, now: dt.datetime, petition: str | None = None,
        source: str | None = None, dry_run: bool = False) -> Summary:
    """Import `data` (a CSV file's bytes) as `kind`: checked and planned on a read that
    takes no write lock, then written in one transaction, committed only when every row is
    good and it is not a dry run. The Summary says what was (or would be) done and lists
    the bad rows; Refused when the file cannot be imported."""
    if kind not in KINDS:
        raise Refused(f"kind: {kind!r} is not one of {', '.join(KINDS)}", field="kind")
    if len(data) > MAX_BYTES:
        raise Refused(f"the file is larger than {MAX_BYTES // 2**20} MiB: split it", 413)
    filename = clean(storable(filename), 200) or "import.csv"
    label = _source(source, filename) if kind == SUPPRESSIONS else None
    if kind == SIGNATURES and not petition:
        raise Refused("petition: name the petition the signatures are for", field="petition")
    if kind == SUPPRESSIONS:
        petition = None
    rows = read_csv(data, kind)
    if kind == SIGNATURES and len(rows) > MAX_PAPER_ROWS:
        raise Refused(f"the file has {len(rows):,} rows: at most {MAX_PAPER_ROWS:,} paper "
                      "signatures a file (signing by message waits while they are "
                      "numbered): split it", 413)
    zone = zoneinfo.ZoneInfo(config.broadcast.timezone)
    summary = Summary(kind, petition, filename, hashlib.sha256(data).hexdigest(), dry_run,
                      rows=len(rows))
    engine: Engine = sessions.kw["bind"]
    with long_read(engine) as connection, Session(connection) as session:
        content = _petition(session, config, petition) if petition else None
        pid = petition_id(session, petition) if petition else None
        _imported_before(session, kind, pid, summary.sha256)
        seen = _last_import(connection, pid)
        if kind == SUPPRESSIONS:
            numbers = _plan_suppressions(connection, rows, summary)
        else:
            assert content is not None
            paper = _plan_signatures(connection, rows, content, pid, summary, zone, now)
    if dry_run or summary.bad_rows:
        return summary
    if kind == SIGNATURES:
        prepared = _paper_rows(paper, zone, now, engine.dialect)
    with sessions() as session:  # committed below only when kept; else rolled back
        if is_postgres(session):
            session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
        if content is not None and pid is None:  # nobody has signed it in any process yet
            pid = _petition_row(session, content.slug, now)
        _imported_before(session, kind, pid, summary.sha256)  # in the meantime
        if kind == SIGNATURES and _imported_since(session.connection(), pid, seen):
            assert content is not None
            checked = Summary(kind, petition, filename, summary.sha256, dry_run, rows=len(rows))
            paper = _plan_signatures(session.connection(), rows, content, pid, checked, zone,
                                     now)
            summary = checked
            if summary.bad_rows:
                return summary
            prepared = _paper_rows(paper, zone, now, engine.dialect)
        batch = _record_batch(session, summary, pid, actor, now)
        if kind == SUPPRESSIONS:
            _keep_suppressions(session.connection(), numbers, label or filename, batch,
                               summary, now)
            session.execute(update(import_batches).where(import_batches.c.id == batch)
                            .values(summary=summary.counts()))
            audit(session, actor, "import.suppressions", f"import:{batch}",
                  {"file": filename, **summary.counts()}, now)
        else:
            assert content is not None and pid is not None
            _keep_signatures(session.connection(), prepared, content, pid, summary, now)
            session.execute(update(import_batches).where(import_batches.c.id == batch)
                            .values(summary=summary.counts()))
            audit(session, actor, "import.signatures", f"import:{batch}",
                  {"file": filename, "petition": petition, **summary.counts()}, now)
        session.commit()
    summary.id = batch
    return summary


def _source(source: str | None, filename: str) -> str:
    """Where a suppression list came from ("Fundraising Preference Service"); the file's
    name when not said."""
    label = clean(storable(source or ""), MAX_SOURCE + 1) or filename[:MAX_SOURCE]
    if len(label) > MAX_SOURCE:
        raise Refused(f"source: at most {MAX_SOURCE} characters", field="source")
    return label


def _petition(session: Session, config: Config, slug: str) -> Petition:
    try:
        return live_petition(session, config, slug)  # staff may have created it
    except KeyError:
        raise Refused(f"no petition has the slug {slug!r}", 404, "petition") from None


def _petition_row(session: Session, slug: str, now: dt.datetime) -> int:
    """The petition's row id, made as Service.sync_petitions makes it if it has none."""
    insert_ignore(session, PetitionRow, {"slug": slug, "signature_count": 0, "last_number": 0,
                                         "created_at": now}, ["slug"])
    pid = petition_id(session, slug)
    assert pid is not None
    return pid


def _imported_before(session: Session, kind: str, pid: int | None, sha256: str) -> None:
    """Refused (409) when these very bytes were imported before, as this kind (and for
    this petition)."""
    earlier = session.execute(
        select(import_batches.c.id, import_batches.c.created_at, import_batches.c.filename)
        .where(import_batches.c.kind == kind, import_batches.c.sha256 == sha256,
               import_batches.c.petition_id.is_(None) if pid is None
               else import_batches.c.petition_id == pid)).first()
    if earlier is not None:
        raise Refused(f"this file was imported before (import {earlier.id}, "
                      f"{earlier.filename}, {earlier.created_at:%d %b %Y %H:%M} UTC): "
                      "nothing was imported again", 409)


def _last_import(conn: Connection, pid: int | None) -> int:
    """The newest paper signatures import of the petition so far (0: none)."""
    if pid is None:
        return 0
    return conn.scalar(select(func.max(import_batches.c.id)).where(
        import_batches.c.kind == SIGNATURES, import_batches.c.petition_id == pid)) or 0


def _imported_since(conn: Connection, pid: int | None, seen: int) -> bool:
    """Whether paper signatures were imported for the petition after import `seen`: the
    rows must then be checked again against them."""
    return pid is not None and bool(conn.scalar(select(exists().where(
        import_batches.c.kind == SIGNATURES, import_batches.c.petition_id == pid,
        import_batches.c.id > seen))))


def _record_batch(session: Session, summary: Summary, pid: int | None, actor: str,
                  now: dt.datetime) -> int:
    batch: int = session.execute(insert(import_batches).values(
        kind=summary.kind, petition_id=pid, filename=summary.filename,
        sha256=summary.sha256, rows=summary.rows, summary=summary.counts(), actor=actor[:254],
        created_at=now).returning(import_batches.c.id)).scalar_one()
    return batch


# The suppression list -----------------------------------------------------------------------

def _plan_suppressions(conn: Connection, rows: Iterable[Row], summary: Summary) -> list[str]:
    """Check every row; the numbers new to the list, in file order."""
    first: dict[str, int] = {}
    for row in rows:
        raw = row.cells["phone"].strip()
        phone = normalise_phone(raw) if raw else None
        if not raw:
            summary.bad(row.line, "phone: empty")
        elif phone is None:
            summary.bad(row.line, "phone: not a phone number (a UK number, or + and the "
                                  "country code)")
        elif phone in first:
            summary.already += 1  # earlier in this file
        else:
            first[phone] = row.line
    listed: set[str] = set()
    known: set[str] = set()
    for chunk in _chunks(list(first)):
        listed.update(conn.scalars(select(suppressions.c.phone)
                                   .where(suppressions.c.phone.in_(chunk))))
        known.update(conn.scalars(select(supporters.c.phone)
                                  .where(supporters.c.phone.in_(chunk))))
        known.update(conn.scalars(select(identities.c.address).where(
            identities.c.channel.in_(PHONE_CHANNELS), identities.c.address.in_(chunk))))
    summary.already += len(listed)
    summary.matched = len(known)
    new = [phone for phone in first if phone not in listed]
    summary.new = len(new)
    return new


def _keep_suppressions(conn: Connection, numbers: Sequence[str], source: str, batch: int,
                       summary: Summary, now: dt.datetime) -> None:
    """Add the planned numbers, a chunk per statement (`_json_rows`); one another import
    listed since is passed over, and counted as already listed."""
    rows, field = _json_rows(conn, "rows", {"phone": String()})
    dialect = postgresql if is_postgres(conn) else sqlite
    add = dialect.insert(suppressions).from_select(
        ["phone", "source", "import_id", "created_at"],
        select(field["phone"], literal(source, String()), literal(batch, BigInteger()),
               literal(now, UTCDateTime())).select_from(rows)
        .where(true())  # (SQLite: without a WHERE, ON CONFLICT would read as a join's ON)
    ).on_conflict_do_nothing(index_elements=["phone"])
    for chunk in _chunks(numbers, SUPPRESSIONS_CHUNK):
        conn.execute(add, {"rows": json.dumps([{"phone": phone} for phone in chunk])})
    added = conn.scalar(select(func.count()).select_from(suppressions)
                        .where(suppressions.c.import_id == batch)) or 0
    summary.already += summary.new - added
    summary.new = added


def _json_rows(conn: Connection, name: str, fields: Mapping[str, TypeEngine[Any]]
               ) -> tuple[FromClause, dict[str, ColumnElement[Any]]]:
    """The rows of the JSON array of objects bound as `name`, as a table, and an expression
    for each of their `fields`: the database unpacks them, so no row goes through Python's
    parameter handling one by one (a million rows take a second, not five)."""
    if is_postgres(conn):
        found = func.json_to_recordset(cast(bindparam(name), JSON)).table_valued(
            *(column(key, type_) for key, type_ in fields.items())).render_derived(
            with_types=True)
        return found, {key: found.c[key] for key in fields}
    each = func.json_each(bindparam(name)).table_valued("value")
    return each, {key: func.json_extract(each.c.value, f"$.{key}") for key in fields}


# Paper signatures ---------------------------------------------------------------------------

def _plan_signatures(conn: Connection, rows: Iterable[Row], content: Petition,
                     pid: int | None,
                     summary: Summary, zone: zoneinfo.ZoneInfo,
                     now: dt.datetime) -> list[PaperSignature]:
    """Check every row, against each other and the petition's signatures; the good ones."""
    today = now.astimezone(zone).date()
    good: list[PaperSignature] = []
    seen: dict[tuple[str, str, dt.date, str], int] = {}
    for row in rows:
        checked = _paper(row, content, today)
        if isinstance(checked, str):
            summary.bad(row.line, checked)
        elif checked.key in seen:
            summary.bad(row.line, f"the same signature as line {seen[checked.key]} (name, "
                                  "postcode, date and source)")
        else:
            seen[checked.key] = row.line
            good.append(checked)
    existing, signers = _already_signed(conn, pid, {p.postcode for p in good}, zone)
    kept = []
    for paper in good:
        if paper.key in existing:
            summary.bad(paper.line, f"already imported: paper signature number "
                                    f"{existing[paper.key]} has the same name, postcode, "
                                    "date and source")
            continue
        if (paper.name.casefold(), paper.postcode) in signers:
            summary.matched += 1
        kept.append(paper)
    summary.new = len(kept)
    summary.sources = dict(Counter(p.source for p in kept))
    return kept


def _paper(row: Row, content: Petition, today: dt.date) -> PaperSignature | str:
    """A row as a paper signature, or why it is not one ("name: ...; date: ...")."""
    cells = row.cells
    errors = []
    name = valid_name(cells["name"])
    if name is None:
        errors.append("name: not a full name as the bot takes one (letters, spaces and "
                      "' - . only, at most 80)" if cells["name"].strip() else "name: empty")
    postcode = normalise_postcode(cells["postcode"].strip())
    if postcode is None:
        errors.append("postcode: not a UK postcode" if cells["postcode"].strip()
                      else "postcode: empty (a paper signature needs a UK postcode)")
    day = parse_date(cells["date"])
    if day is None:
        errors.append("date: not a date (YYYY-MM-DD or DD/MM/YYYY)"
                      if cells["date"].strip() else "date: empty")
    elif day > today:
        errors.append("date: in the future")
    elif day < content.created:
        errors.append(f"date: before the petition was created ({content.created:%d/%m/%Y})")
    elif content.closed is not None and day > content.closed:
        errors.append(f"date: after the petition closed ({content.closed:%d/%m/%Y})")
    source = clean(storable(cells["source"]), MAX_SOURCE + 1)
    if not source:
        errors.append("source: empty (where was it signed? e.g. Leeds march)")
    elif len(source) > MAX_SOURCE:
        errors.append(f"source: longer than {MAX_SOURCE} characters")
    if errors or name is None or postcode is None or day is None:
        return "; ".join(errors)
    return PaperSignature(row.line, name, postcode, day, source)


def _already_signed(conn: Connection, pid: int | None, postcodes: set[str],
                    zone: zoneinfo.ZoneInfo
                    ) -> tuple[dict[tuple[str, str, dt.date, str], int], set[tuple[str, str]]]:
    """The petition's paper signatures at these postcodes (key -> number), and the (name,
    postcode) of those who signed here on a channel: one pass over the petition's rows."""
    paper: dict[tuple[str, str, dt.date, str], int] = {}
    signers: set[tuple[str, str]] = set()
    if pid is None or not postcodes:
        return paper, signers
    query = (select(signatures.c.number, signatures.c.name, signatures.c.postcode,
                    signatures.c.channel, signatures.c.source, signatures.c.signed_at)
             .where(signatures.c.petition_id == pid, signatures.c.postcode.is_not(None))
             .execution_options(yield_per=5000))
    for row in conn.execute(query):
        if row.postcode not in postcodes:
            continue
        if row.channel == PAPER:
            key = (row.name.casefold(), row.postcode, row.signed_at.astimezone(zone).date(),
                   (row.source or "").casefold())
            paper[key] = row.number
        else:
            signers.add((row.name.casefold(), row.postcode))
    return paper, signers


def _paper_rows(paper: Sequence[PaperSignature], zone: zoneinfo.ZoneInfo, now: dt.datetime,
                dialect: Dialect) -> list[str]:
    """Each paper signature's JSON row (PAPER_FIELDS) but its supporter's id, made before
    the write transaction: the object's members, without its braces."""
    stored = UTCDateTime().bind_processor(dialect)
    return [json.dumps({
        "i": i, "name": p.name, "postcode": p.postcode,
        "postcode_area": postcode_area(p.postcode), "nation": nation_of(p.postcode).value,
        "source": p.source, "signed_at": _stored(stored, signed_at(p.day, zone, now))})[1:-1]
        for i, p in enumerate(paper)]


def _keep_signatures(conn: Connection, rows: Sequence[str], content: Petition, pid: int,
                     summary: Summary, now: dt.datetime) -> None:
    """Each paper signature (`_paper_rows`) on a supporter of its own, numbered under the
    petition's lock, counted, and told to the receivers that want signature.created. All
    that can be is done before the lock, and the rows go in a chunk per statement
    (`_json_rows`)."""
    people = _new_supporters(conn, len(rows), now)
    insert_ignore(conn, ChannelCount, {"petition_id": pid, "channel": PAPER, "count": 0},
                  ["petition_id", "channel"])
    chunks = ["[" + ",".join(f'{{"supporter_id":{people[i]},{rows[i]}}}' for i in chunk) + "]"
              for chunk in _chunks(range(len(rows)), PAPER_CHUNK)]
    found, field = _json_rows(conn, "rows", PAPER_FIELDS)
    add = insert(signatures).from_select(
        ["petition_id", "supporter_id", "number", "name", "postcode", "postcode_area",
         "nation", "channel", "source", "signed_at"],
        select(bindparam("p_petition"), field["supporter_id"],
               bindparam("p_first") + field["i"], field["name"], field["postcode"],
               field["postcode_area"], field["nation"], literal(PAPER, String()),
               field["source"], field["signed_at"]).select_from(found))
    # From here to the commit the petition's row is locked: signing waits, briefly.
    last, here = conn.execute(COUNT_SIGNATURES, {"p_petition": pid, "p_n": len(rows)}).one()
    first = last - len(rows) + 1
    conn.execute(update(channel_counts).where(channel_counts.c.petition_id == pid,
                                              channel_counts.c.channel == PAPER)
                 .values(count=channel_counts.c.count + len(rows)))
    for chunk_rows in chunks:
        conn.execute(add, {"rows": chunk_rows, "p_petition": pid, "p_first": first})
    if _wanted(conn, events.SIGNATURE_CREATED):
        made = conn.execute(select(signatures).where(
            signatures.c.petition_id == pid, signatures.c.number.between(first, last))
            .order_by(signatures.c.number))
        events.record_many(conn, events.SIGNATURE_CREATED, [
            (events.signature_data(content.slug, row), row.supporter_id) for row in made],
            now)
    milestone_drafts(conn, content, here - len(rows) + content.external_count,
                     here + content.external_count, now)
    summary.first_number, summary.last_number = first, last


def _new_supporters(conn: Connection, n: int, now: dt.datetime) -> list[int]:
    """The ids of `n` new, empty supporters (one statement per chunk)."""
    found, _ = _json_rows(conn, "rows", {"i": Integer()})
    add = insert(supporters).from_select(
        ["created_at"], select(literal(now, UTCDateTime())).select_from(found)
    ).returning(supporters.c.id)
    made: list[int] = []
    for chunk in _chunks(range(n), PAPER_CHUNK):
        made.extend(conn.execute(add, {"rows": "[" + ",".join(['{"i":0}'] * len(chunk))
                                       + "]"}).scalars())
    return made


def _stored(process: Any, value: dt.datetime) -> Any:
    """A time as its column stores it (SQLite: text), for a JSON row; ISO 8601 otherwise."""
    stored = process(value) if process else value
    return stored.isoformat() if isinstance(stored, dt.datetime) else stored


def signed_at(day: dt.date, zone: zoneinfo.ZoneInfo, now: dt.datetime) -> dt.datetime:
    """When a paper signature of `day` was made, as stored: a form gives a day, not a time,
    so noon that day in the campaign's zone (the same day in UTC, whatever the season), or
    now if that is still to come."""
    return min(dt.datetime.combine(day, dt.time(12), zone).astimezone(dt.UTC), now)


def _wanted(conn: Connection, type_: str) -> bool:
    """Whether any receiver asked for events of `type_`: a large import asks once, not once
    a row (events.record answers the same for each)."""
    return any(type_ in (types or []) for types in conn.scalars(select(event_receivers.c.events)))


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


__all__ = ["KINDS", "MAX_BYTES", "MAX_PAPER_ROWS", "PAPER", "SIGNATURES", "SUPPRESSIONS",
           "Problem", "Refused", "Summary", "parse_date", "read_csv", "run", "signed_at"]
