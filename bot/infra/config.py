"""Load and validate config.toml into frozen dataclasses.

Rules: every problem is collected with its dotted path and reported together; nothing
starts on an invalid file. Unknown keys are errors (a typo must not silently do nothing).
Paths inside the file are relative to the file's folder.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import tomllib
import zoneinfo
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core import texts
from bot.core.gsm import is_gsm7, septets, unicode_forcing_characters

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
CODE = re.compile(r"^[A-Z0-9]{2,16}$")
QUIET_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
CHANNELS = ("telegram", "sms", "whatsapp")


class ConfigError(Exception):
    """The configuration is invalid; `errors` holds one line per problem."""

    def __init__(self, path: Path | str, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"{path}: {len(errors)} error(s):\n  " + "\n  ".join(errors))


@dataclass(frozen=True)
class Organisation:
    name: str
    short_name: str
    contact: str
    privacy_url: str


@dataclass(frozen=True)
class Privacy:
    version: str
    minimum_age: int
    retention: str
    consent: str
    updates: str


@dataclass(frozen=True)
class Broadcast:
    timezone: str
    quiet_hours: tuple[dt.time, dt.time] | None
    rates: Mapping[str, float]
    frequency_cap: int = 3          # announcements one person may get ...
    frequency_days: int = 7         # ... within this many days
    max_attempts: int = 5


DISTRESS_WORDS = ("suicide", "suicidal", "kill myself", "end my life", "want to die",
                  "self harm", "self-harm", "hurt myself", "no reason to live", "can't go on",
                  "cannot go on", "overdose", "hopeless")


@dataclass(frozen=True)
class Safeguarding:
    words: tuple[str, ...] = DISTRESS_WORDS
    reply: str = ""  # empty: the default signposting text in bot/core/texts.py


@dataclass(frozen=True)
class Staff:
    telegram_ids: tuple[int, ...] = ()   # may use /announce and /stats in Telegram
    test_group: tuple[str, ...] = ()     # "sms:+44...", "whatsapp:+44...", "telegram:123"


@dataclass(frozen=True)
class Console:
    require_second_approval: bool = True  # nobody approves an announcement they wrote
    sms_price: float = 0.04               # GBP per SMS segment, for the compose estimate
    admin_two_factor: bool = True         # admins sign in with an authenticator app's code


@dataclass(frozen=True)
class Abuse:
    replies_per_window: int
    window_seconds: int


@dataclass(frozen=True)
class Api:
    """The staff API (/api/v1): one table for all its settings, so more can join it."""

    requests_per_window: int = 600  # requests one token may make ...
    window_seconds: int = 600       # ... in any window this long (then 429)
    # Event receivers' URLs are https; plain http only to these hosts (e.g. a CRM on the
    # same private network, or 127.0.0.1 in tests). Lower case, without brackets.
    http_webhook_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Retention:
    inbound_text_days: int
    unfinished_conversation_days: int
    closed_petition_months: int
    inbox_days: int = 365  # a closed inbox conversation is deleted this long after closing


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SPAN = r"[A-Za-z]{3}(?:-[A-Za-z]{3})?"
OFFICE_HOURS = re.compile(rf"^(?P<days>{DAY_SPAN}(?:,{DAY_SPAN})*)"
                          r" (?P<start>[01]\d|2[0-3]):(?P<sm>[0-5]\d)-(?P<end>[01]\d|2[0-3]):"
                          r"(?P<em>[0-5]\d)$")


@dataclass(frozen=True)
class Inbox:
    """When staff answer messages kept for a person, as supporters are told it."""

    answer_within: str = "2 working days"   # "someone will answer within ..."
    days: tuple[int, ...] = (0, 1, 2, 3, 4)  # office days, Monday = 0
    opens: dt.time = dt.time(9, 0)
    closes: dt.time = dt.time(17, 0)
    timezone: str = "Europe/London"


@dataclass(frozen=True)
class ExternalCount:
    source: str
    count: int
    as_of: dt.date | None = None  # when the count was read off the other site


@dataclass(frozen=True)
class Petition:
    slug: str
    code: str
    title: str
    summary: str
    issue: str
    decision_makers: tuple[str, ...]
    organiser: str
    created: dt.date
    goal: int
    share_url: str
    external: tuple[ExternalCount, ...] = ()
    closed: dt.date | None = None
    milestones: tuple[int, ...] = ()  # totals that create a draft announcement, once each

    @property
    def external_count(self) -> int:
        """Signatures collected elsewhere (e.g. Change.org), all sources together."""
        return sum(e.count for e in self.external)


class FindsPetitions:
    """Finding one of `petitions`: config.toml's (Config) or the live ones (the shell's
    Content)."""

    petitions: tuple[Petition, ...]

    def petition(self, slug: str) -> Petition:
        """The petition with this slug (KeyError when unknown)."""
        for petition in self.petitions:
            if petition.slug == slug:
                return petition
        raise KeyError(slug)

    def petition_by_code(self, code: str) -> Petition | None:
        """The petition whose code or slug matches, ignoring case."""
        wanted = code.strip().upper()
        for petition in self.petitions:
            if wanted in (petition.code, petition.slug.upper()):
                return petition
        return None


@dataclass(frozen=True)
class Config(FindsPetitions):
    organisation: Organisation
    privacy: Privacy
    broadcast: Broadcast
    abuse: Abuse
    retention: Retention
    petitions: tuple[Petition, ...]
    default_petition: str
    texts: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None
    staff: Staff = Staff()
    safeguarding: Safeguarding = Safeguarding()
    console: Console = Console()
    inbox: Inbox = Inbox()
    api: Api = Api()


class _Reader:
    """Reads typed values out of nested tables, collecting errors by dotted path."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.errors: list[str] = []

    def table(self, path: str, *, required: bool = True) -> Mapping[str, Any]:
        value = self._get(path)
        if value is None:
            if required:
                self.errors.append(f"{path}: missing table")
            return {}
        if not isinstance(value, Mapping):
            self.errors.append(f"{path}: must be a table")
            return {}
        return value

    def _get(self, path: str) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def value(self, table: Mapping[str, Any], path: str, key: str, kind: type, default: Any) -> Any:
        where = f"{path}.{key}" if path else key
        if key not in table:
            if default is _REQUIRED:
                self.errors.append(f"{where}: missing")
            return None if default is _REQUIRED else default
        value = table[key]
        if kind is int and isinstance(value, bool):
            value = None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            self.errors.append(f"{where}: must be {kind.__name__}")
            return None if default is _REQUIRED else default
        if isinstance(value, str) and default is _REQUIRED and not value.strip():
            self.errors.append(f"{where}: must not be empty")
        return value

    def unknown(self, table: Mapping[str, Any], path: str, known: set[str]) -> None:
        for key in sorted(set(table) - known):
            self.errors.append(f"{path + '.' if path else ''}{key}: unknown key")


_REQUIRED: Any = object()


def load_config(path: Path | str) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [f"not valid TOML: {error}"]) from None
    return parse_config(data, base=path.parent, path=path)


def parse_config(data: Mapping[str, Any], base: Path, path: Path | None = None) -> Config:
    """Validate already-parsed TOML data."""
    r = _Reader(data)
    r.unknown(data, "", {"default_petition", "organisation", "privacy", "broadcast", "abuse",
                         "retention", "petitions", "texts", "staff", "safeguarding",
                         "console", "inbox", "api"})
    organisation = _organisation(r)
    privacy = _privacy(r, organisation)
    broadcast = _broadcast(r)
    ab = r.table("abuse", required=False)
    r.unknown(ab, "abuse", {"replies_per_window", "window_seconds"})
    abuse = Abuse(_positive(r, ab, "abuse", "replies_per_window", 40),
                  _positive(r, ab, "abuse", "window_seconds", 600))
    rt = r.table("retention", required=False)
    r.unknown(rt, "retention", {"inbound_text_days", "unfinished_conversation_days",
                                "closed_petition_months", "inbox_days"})
    retention = Retention(_positive(r, rt, "retention", "inbound_text_days", 30),
                          _positive(r, rt, "retention", "unfinished_conversation_days", 30),
                          _positive(r, rt, "retention", "closed_petition_months", 6),
                          _positive(r, rt, "retention", "inbox_days", 365))
    petitions = _petitions(r, base)
    default = r.value(data, "", "default_petition", str,
                      petitions[0].slug if petitions else "")
    if petitions and default not in {p.slug for p in petitions}:
        r.errors.append(f"default_petition: no petition has slug {default!r}")
    overrides = _texts(r)
    staff = _staff(r)
    safeguarding = _safeguarding(r)
    console = _console(r)
    inbox = _inbox(r)
    api = _api(r)
    if r.errors:
        raise ConfigError(path or "config", r.errors)
    return Config(organisation, privacy, broadcast, abuse, retention, tuple(petitions),
                  default, overrides, path, staff, safeguarding,
                  console, inbox, api)


API_MAX_REQUESTS = 10_000   # each hit is kept and rewritten per request: keep the row small
API_MAX_WINDOW = 24 * 3600  # rate windows unused for a day are deleted (bot/shell/throttle.py)


def _api(r: _Reader) -> Api:
    t = r.table("api", required=False)
    r.unknown(t, "api", {"requests_per_window", "window_seconds", "http_webhook_hosts"})
    api = Api(_positive(r, t, "api", "requests_per_window", Api.requests_per_window),
              _positive(r, t, "api", "window_seconds", Api.window_seconds),
              _hosts(r, t, "api", "http_webhook_hosts"))
    if api.requests_per_window > API_MAX_REQUESTS:
        r.errors.append(f"api.requests_per_window: at most {API_MAX_REQUESTS:,}")
    if api.window_seconds > API_MAX_WINDOW:
        r.errors.append(f"api.window_seconds: at most {API_MAX_WINDOW} (a day)")
    return api


def _hosts(r: _Reader, t: Mapping[str, Any], path: str, key: str) -> tuple[str, ...]:
    """Host names as a URL's host compares ("crm.internal", "127.0.0.1", "::1"): no
    scheme, port or path, since what they allow is any port and path on that host."""
    hosts = r.value(t, path, key, list, [])
    found = []
    for host in hosts:
        name = host.strip().lower().removeprefix("[").removesuffix("]") \
            if isinstance(host, str) else ""
        if not name or any(c in name for c in "/@ \t") or name.count(":") == 1:
            r.errors.append(f"{path}.{key}: a list of host names, such as \"127.0.0.1\" or "
                            f"\"crm.internal\" (no scheme, port or path): not {host!r}")
        else:
            found.append(name)
    return tuple(found)


def _safeguarding(r: _Reader) -> Safeguarding:
    t = r.table("safeguarding", required=False)
    r.unknown(t, "safeguarding", {"words", "reply"})
    words = r.value(t, "safeguarding", "words", list, list(DISTRESS_WORDS))
    if not all(isinstance(w, str) and w.strip() for w in words):
        r.errors.append("safeguarding.words: a list of words or phrases")
        words = list(DISTRESS_WORDS)
    reply = r.value(t, "safeguarding", "reply", str, "")
    if reply:  # the "signpost" text: checked as any text is
        _template(r, "safeguarding.reply", reply, texts.fields("signpost"))
    return Safeguarding(tuple(w.strip() for w in words), reply)


TEST_MEMBER = re.compile(r"^(sms|whatsapp):\+[1-9]\d{6,14}$|^telegram:-?\d{1,20}$")


def _staff(r: _Reader) -> Staff:
    t = r.table("staff", required=False)
    r.unknown(t, "staff", {"telegram_ids", "test_group"})
    ids = r.value(t, "staff", "telegram_ids", list, [])
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        r.errors.append("staff.telegram_ids: a list of numeric Telegram user ids")
        ids = []
    group = r.value(t, "staff", "test_group", list, [])
    for i, member in enumerate(group):
        if not isinstance(member, str) or not TEST_MEMBER.match(member):
            r.errors.append(f"staff.test_group[{i}]: like \"sms:+447700900001\", "
                            "\"whatsapp:+447700900001\" or \"telegram:123456\"")
    return Staff(tuple(ids), tuple(m for m in group if isinstance(m, str)))


def _console(r: _Reader) -> Console:
    t = r.table("console", required=False)
    r.unknown(t, "console", {"require_second_approval", "sms_price", "admin_two_factor"})
    second = r.value(t, "console", "require_second_approval", bool, True)
    price = r.value(t, "console", "sms_price", float, 0.04)
    if price is not None and not 0 <= price <= 10:
        r.errors.append("console.sms_price: GBP per segment, between 0 and 10")
    two_factor = r.value(t, "console", "admin_two_factor", bool, True)
    return Console(second, price, two_factor)


def _inbox(r: _Reader) -> Inbox:
    t = r.table("inbox", required=False)
    r.unknown(t, "inbox", {"answer_within", "office_hours", "timezone"})
    within = r.value(t, "inbox", "answer_within", str, Inbox.answer_within).strip()
    _gsm(r, "inbox.answer_within", within)
    if not within or len(within) > 60:
        r.errors.append("inbox.answer_within: a short phrase, like \"2 working days\"")
        within = Inbox.answer_within
    zone = r.value(t, "inbox", "timezone", str, Inbox.timezone)
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        r.errors.append(f"inbox.timezone: unknown time zone {zone!r}")
        zone = Inbox.timezone
    hours = r.value(t, "inbox", "office_hours", str, "Mon-Fri 09:00-17:00").strip()
    match = OFFICE_HOURS.match(hours)
    days: list[int] = []
    if match:
        for part in match["days"].lower().split(","):
            first, _, last = part.partition("-")
            if first not in WEEKDAYS or (last or first) not in WEEKDAYS:
                match = None
                break
            a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
            days += range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
    opens = closes = dt.time(0)
    if match:
        opens = dt.time(int(match["start"]), int(match["sm"]))
        closes = dt.time(int(match["end"]), int(match["em"]))
    if not match or opens >= closes:
        r.errors.append("inbox.office_hours: like \"Mon-Fri 09:00-17:00\" (days, then "
                        "opening and closing times)")
        return Inbox(within, timezone=zone)
    return Inbox(within, tuple(sorted(set(days))), opens, closes, zone)


def _organisation(r: _Reader) -> Organisation:
    t = r.table("organisation")
    r.unknown(t, "organisation", {"name", "short_name", "contact", "privacy_url"})
    org = Organisation(
        name=r.value(t, "organisation", "name", str, _REQUIRED) or "",
        short_name=r.value(t, "organisation", "short_name", str, _REQUIRED) or "",
        contact=r.value(t, "organisation", "contact", str, ""),
        privacy_url=r.value(t, "organisation", "privacy_url", str, _REQUIRED) or "",
    )
    for key in ("name", "short_name", "contact", "privacy_url"):
        _gsm(r, f"organisation.{key}", getattr(org, key))
    return org


def _privacy(r: _Reader, org: Organisation) -> Privacy:
    t = r.table("privacy")
    r.unknown(t, "privacy", {"version", "minimum_age", "retention", "consent", "updates"})
    privacy = Privacy(
        version=r.value(t, "privacy", "version", str, _REQUIRED) or "",
        minimum_age=r.value(t, "privacy", "minimum_age", int, 16),
        retention=r.value(t, "privacy", "retention", str, "until the campaign ends"),
        consent=r.value(t, "privacy", "consent", str, _REQUIRED) or "",
        updates=r.value(t, "privacy", "updates", str, _REQUIRED) or "",
    )
    _template(r, "privacy.consent", privacy.consent, PRIVACY_FIELDS)
    _template(r, "privacy.updates", privacy.updates, PRIVACY_FIELDS)
    if privacy.consent:
        r.errors += [f"privacy.consent: {problem}" for problem in consent_problems(
            privacy.consent, privacy.minimum_age, org.privacy_url)]
    return privacy


def _broadcast(r: _Reader) -> Broadcast:
    t = r.table("broadcast")
    r.unknown(t, "broadcast", {"timezone", "quiet_hours", "rates", "frequency_cap",
                               "frequency_days", "max_attempts"})
    timezone = r.value(t, "broadcast", "timezone", str, "Europe/London")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        r.errors.append(f"broadcast.timezone: unknown time zone {timezone!r}")
    raw_quiet = r.value(t, "broadcast", "quiet_hours", str, "21:00-08:00")
    quiet: tuple[dt.time, dt.time] | None = None
    if raw_quiet:
        match = QUIET_HOURS.match(raw_quiet)
        if match:
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            quiet = (dt.time(h1, m1), dt.time(h2, m2))
        else:
            r.errors.append("broadcast.quiet_hours: must look like \"21:00-08:00\" or be \"\"")
    rates_table = r.value(t, "broadcast", "rates", dict, {})
    r.unknown(rates_table, "broadcast.rates", set(CHANNELS))
    defaults = {"telegram": 25.0, "sms": 10.0, "whatsapp": 20.0}
    rates = {}
    for channel in CHANNELS:
        rate = r.value(rates_table, "broadcast.rates", channel, float, defaults[channel])
        if rate is not None and not 0 < rate <= 1000:
            r.errors.append(f"broadcast.rates.{channel}: must be between 0 and 1000")
        rates[channel] = rate
    return Broadcast(timezone, quiet, rates,
                     frequency_cap=_positive(r, t, "broadcast", "frequency_cap", 3),
                     frequency_days=_positive(r, t, "broadcast", "frequency_days", 7),
                     max_attempts=_positive(r, t, "broadcast", "max_attempts", 5))


PETITION_KEYS = frozenset({"slug", "code", "title", "summary", "issue", "decision_makers",
                           "organiser", "created", "goal", "share_url", "external", "closed",
                           "milestones"})
SUMMARY_LIMIT = 200  # characters: the summary opens every SMS chat


def check_petition(table: Mapping[str, Any],
                   base: Path | None = None) -> tuple[Petition, list[tuple[str, str]]]:
    """One petition's content checked by the rules config.toml's petitions follow, wherever
    it comes from (the file, the console, the API): the petition, and every problem as
    (field, message), the field a path inside the petition ("summary", "external[0].count").
    Without `base` the issue is inline text: naming a file (issue_file) is for the file."""
    r = _Reader(table)
    petition = _petition(r, table, "", base)
    return petition, [(where, message) for where, _, message in
                      (error.partition(": ") for error in r.errors)]


def _petitions(r: _Reader, base: Path) -> list[Petition]:
    raw = r.data.get("petitions")
    if not isinstance(raw, list) or not raw:
        r.errors.append("petitions: at least one [[petitions]] table is required")
        return []
    petitions: list[Petition] = []
    for i, t in enumerate(raw):
        path = f"petitions[{i}]"
        if not isinstance(t, Mapping):
            r.errors.append(f"{path}: must be a table")
            continue
        petitions.append(_petition(r, t, path, base))
    slugs = [p.slug for p in petitions]
    for slug in {s for s in slugs if slugs.count(s) > 1}:
        r.errors.append(f"petitions: slug {slug!r} is used twice")
    codes = [p.code for p in petitions]
    for code in {c for c in codes if codes.count(c) > 1}:
        r.errors.append(f"petitions: code {code!r} is used twice")
    return petitions


def _petition(r: _Reader, t: Mapping[str, Any], path: str, base: Path | None) -> Petition:
    """One petition's table, its problems added to `r` under `path` ("" for a lone one)."""
    def at(key: str) -> str:
        return f"{path}.{key}" if path else key

    r.unknown(t, path, {*PETITION_KEYS, *(["issue_file"] if base is not None else [])})
    slug = r.value(t, path, "slug", str, _REQUIRED) or ""
    if slug and not SLUG.match(slug):
        r.errors.append(f"{at('slug')}: lowercase letters, digits and dashes only "
                        "(at most 41)")
    code = r.value(t, path, "code", str, slug.upper().replace("-", ""))
    if code and not CODE.match(code):
        r.errors.append(f"{at('code')}: 2 to 16 capital letters or digits")
    issue = r.value(t, path, "issue", str, "")
    issue_file = r.value(t, path, "issue_file", str, "") if base is not None else ""
    if base is not None and issue_file:
        try:
            issue = (base / issue_file).read_text(encoding="utf-8")
        except OSError as error:
            r.errors.append(f"{at('issue_file')}: cannot read {issue_file!r} ({error.strerror})")
    elif not issue.strip():
        r.errors.append(f"{at('issue')}: missing" + (" (or name its file in issue_file)"
                                                    if base is not None else ""))
    makers = r.value(t, path, "decision_makers", list, _REQUIRED) or []
    if not makers or not all(isinstance(m, str) and m.strip() for m in makers):
        r.errors.append(f"{at('decision_makers')}: a list of names")
    external = []
    for j, ext in enumerate(r.value(t, path, "external", list, [])):
        epath = f"{at('external')}[{j}]"
        if not isinstance(ext, Mapping):
            r.errors.append(f"{epath}: must be a table")
            continue
        r.unknown(ext, epath, {"source", "count", "as_of"})
        count = r.value(ext, epath, "count", int, _REQUIRED)
        if count is not None and count < 0:
            r.errors.append(f"{epath}.count: must not be negative")
        source = r.value(ext, epath, "source", str, _REQUIRED) or ""
        _gsm(r, f"{epath}.source", source)
        external.append(ExternalCount(source.strip(), count or 0,
                                      _date(r, ext, epath, "as_of", None)))
    milestones = r.value(t, path, "milestones", list, [])
    if not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in milestones):
        r.errors.append(f"{at('milestones')}: a list of positive whole numbers")
        milestones = []
    created = _date(r, t, path, "created", _REQUIRED)
    closed = _date(r, t, path, "closed", None)
    if created and closed and closed < created:
        r.errors.append(f"{at('closed')}: must not be before the petition was created")
    share_url = r.value(t, path, "share_url", str, "")
    if share_url and not share_url.startswith(("https://", "http://")):
        r.errors.append(f"{at('share_url')}: a web address starting with https://")
    petition = Petition(
        slug=slug, code=code or "", title=r.value(t, path, "title", str, _REQUIRED) or "",
        summary=r.value(t, path, "summary", str, _REQUIRED) or "", issue=issue.strip(),
        decision_makers=tuple(m.strip() for m in makers if isinstance(m, str)),
        organiser=r.value(t, path, "organiser", str, _REQUIRED) or "",
        created=created or dt.date.min, goal=_positive(r, t, path, "goal", 100000),
        share_url=share_url, external=tuple(external), closed=closed,
        milestones=tuple(sorted(milestones)))
    # Everything the bot says by SMS: title and summary (greeting), the issue (MORE),
    # decision makers, organiser and the other sites' names (INFO).
    for key in ("title", "summary", "organiser", "issue"):
        _gsm(r, at(key), getattr(petition, key))
    for maker in petition.decision_makers:
        _gsm(r, at("decision_makers"), maker)
    if len(petition.summary) > SUMMARY_LIMIT:
        r.errors.append(f"{at('summary')}: at most {SUMMARY_LIMIT} characters (it opens every "
                        "SMS chat)")
    return petition


def _date(r: _Reader, t: Mapping[str, Any], path: str, key: str, default: Any) -> Any:
    """A date: a TOML date, or the same written as 2025-03-17 (JSON has no dates)."""
    where = f"{path}.{key}" if path else key
    if key not in t:
        if default is _REQUIRED:
            r.errors.append(f"{where}: missing")
            return None
        return default
    value = t[key]
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value.strip())
        except ValueError:
            value = None
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        r.errors.append(f"{where}: a date like 2025-03-17")
        return None if default is _REQUIRED else default
    return value


def _texts(r: _Reader) -> dict[str, str]:
    t = r.table("texts", required=False)
    overrides: dict[str, str] = {}
    for key, value in t.items():
        path = f"texts.{key}"
        if key not in texts.DEFAULTS:
            r.errors.append(f"{path}: unknown text (known: see bot/core/texts.py)")
            continue
        if key in ("consent", "ask_updates"):
            r.errors.append(f"{path}: set this wording in [privacy] (with its version)")
            continue
        if not isinstance(value, str) or not value.strip():
            r.errors.append(f"{path}: must be a non-empty string")
            continue
        _template(r, path, value, texts.fields(key))
        overrides[key] = value
    return overrides


# The fields the two consent questions ([privacy] consent and updates) may use.
PRIVACY_FIELDS = frozenset({"decision_makers", "retention", "minimum_age", "privacy_url",
                            "organisation"})
MAX_TEXT = 459  # what three SMS messages hold: an SMS reply is cut after three


def text_problems(text: str, allowed: Collection[str]) -> list[str]:
    """What stops `text` being one of the bot's texts, one problem a line: braces that do
    not pair, a field it may not use, characters SMS cannot carry, more than an SMS reply
    holds. Start-up and the console both ask this, so they never disagree."""
    problems: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        parsed = []
        problems.append("a brace { or } has no partner: fields are written like {count}")
    for name in dict.fromkeys(name for _, name, _, _ in parsed if name is not None):
        if name not in allowed:
            may = ", ".join(f"{{{f}}}" for f in sorted(allowed)) or "no fields"
            problems.append(f"{{{name}}} is not a field this text can use (it may use {may})")
    if any(spec or conversion for _, name, spec, conversion in parsed if name in allowed):
        problems.append("write each field plainly, like {count}, with nothing after its name")
    if gsm := _gsm_problem(text):
        problems.append(gsm)
    if septets(text) > MAX_TEXT:
        problems.append(f"at most {MAX_TEXT} characters, what three text messages hold "
                        f"(this has {septets(text)})")
    return problems


def consent_problems(consent: str, minimum_age: int, privacy_url: str) -> list[str]:
    """What the consent statement lacks: the minimum age, the link to the privacy notice."""
    problems = []
    if "{minimum_age}" not in consent and str(minimum_age) not in consent:
        problems.append("must state the minimum age (write {minimum_age})")
    if "{privacy_url}" not in consent and privacy_url not in consent:
        problems.append("must link the privacy notice (write {privacy_url})")
    return problems


def _template(r: _Reader, path: str, template: str, allowed: Collection[str]) -> None:
    r.errors += [f"{path}: {problem}" for problem in text_problems(template, allowed)]


def _gsm(r: _Reader, path: str, text: str) -> None:
    if problem := _gsm_problem(text):
        r.errors.append(f"{path}: {problem}")


def _gsm_problem(text: str) -> str | None:
    if not text or is_gsm7(text):
        return None
    return ("use plain characters only (SMS cannot carry curly quotes, long dashes or "
            "emoji): " + " ".join(unicode_forcing_characters(text)))


def _positive(r: _Reader, t: Mapping[str, Any], path: str, key: str, default: int) -> int:
    value: int = r.value(t, path, key, int, default)
    if value is not None and value <= 0:
        r.errors.append(f"{f'{path}.' if path else ''}{key}: must be a positive whole number")
    return value
