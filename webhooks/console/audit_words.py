"""The audit log in words a person uses: each entry as one sentence saying who did what to
what ("Sam (admin) approved the announcement “Thank you…” for SIRT"), then the rest of its
detail as "label: value" lines, a change as "from X to Y", times in the charity's zone.

WORDINGS names every action the code records, in one table: the kind of action (the log's
filter offers these) and the sentence. A sentence may use `{who}`, `{target}`, `{actor}`
(the actor as recorded) and any key of the entry's detail; a key the sentence uses is not
listed again. An action missing from the table still reads: who, the action's name in
words and what it was done to, then its detail. tests/unit/test_audit_words.py finds every
action recorded anywhere in the code and fails on one that is missing here."""

from __future__ import annotations

import datetime as dt
import re
import string
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from markupsafe import Markup

from bot.shell.staff import OPERATOR
from webhooks.console.forms import NATIONS


@dataclass(frozen=True)
class Wording:
    """How one action reads: its kind (for the filter) and its sentence."""

    kind: str
    sentence: str
    labels: Mapping[str, str] = field(default_factory=dict)  # this action's own labels
    hidden: tuple[str, ...] = ()  # detail of no use to a reader (internal ids)


A = "the announcement {target}"
RETENTION = {"inbound_texts": "Message texts blanked",
             "conversations": "Unfinished conversations cleared",
             "signatures": "Signatures anonymised", "people": "People forgotten",
             "subscriptions": "Subscriptions to closed petitions removed",
             "deliveries": "Delivery records removed", "voices": "Unpublished voices removed",
             "inbox_conversations": "Closed inbox conversations removed",
             "events": "Events for other systems removed (delivered or parked)",
             "suppressed": "Numbers kept only to honour a STOP"}

WORDINGS: dict[str, Wording] = {
    # Announcements
    "announcement.create": Wording("Announcement drafted", "{who} drafted " + A),
    "announcement.edit": Wording("Announcement edited", "{who} edited " + A),
    "announcement.test": Wording("Announcement tested on the test group",
                                 "{who} sent " + A + " to the test group"),
    "announcement.approve": Wording("Announcement approved", "{who} approved " + A),
    "announcement.cancel": Wording("Announcement cancelled", "{who} cancelled " + A),
    "announcement.discard": Wording("Draft discarded", "{who} discarded the draft {target}"),
    "announcement.pause": Wording("Announcement paused", "{who} paused " + A),
    "announcement.resume": Wording("Announcement resumed", "{who} resumed " + A),
    # Petitions and the bot's words
    "petition.create": Wording("Petition created", "{who} created the petition {target}"),
    "petition.edit": Wording("Petition edited", "{who} edited the petition {target}"),
    "petition.close": Wording("Petition closed", "{who} closed the petition {target}"),
    "petition.reopen": Wording("Petition reopened", "{who} reopened the petition {target}"),
    "petition.restore": Wording("Petition restored to an earlier version",
                                "{who} restored an earlier version of the petition {target}"),
    "text.save": Wording("Bot's words changed", "{who} changed the bot's words {target}",
                         {"change": "Wording", "consent_version": "New consent version"}),
    "text.reset": Wording("Bot's words reset", "{who} put back the usual words {target}",
                          {"change": "Wording", "consent_version": "New consent version"}),
    "export.signatures": Wording("Signatures downloaded",
                                 "{who} downloaded the signatures of the {target} petition"),
    # Colleagues and sign-in
    "login": Wording("Signed in", "{who} signed in"),
    "login.failed": Wording("Sign-in refused",
                            "A sign-in as {actor} was refused: the email and password did "
                            "not match", {"address": "From (a disguised network address)"}),
    "login.code_failed": Wording("Sign-in code refused",
                                 "{who} could not sign in: the two-factor code was not right",
                                 {"address": "From (a disguised network address)"}),
    "staff.add": Wording("Colleague added", "{who} added {role} {target}"),
    "staff.name": Wording("Name changed", "{who} changed the name shown for {target}"),
    "staff.role": Wording("Role changed",
                          "{who} changed the role of {target} from {from} to {to}"),
    "staff.deactivate": Wording("Account closed", "{who} closed the account of {target}"),
    "staff.reactivate": Wording("Account reopened", "{who} reopened the account of {target}"),
    "invite.create": Wording("Colleague invited", "{who} invited {target} as {role}",
                             {"replaces": "Replaces invitation"}, hidden=("invite",)),
    "invite.accept": Wording("Invitation accepted",
                             "{who} accepted the invitation and joined as {role}",
                             hidden=("invite",)),
    "invite.revoke": Wording("Invitation withdrawn",
                             "{who} withdrew the invitation for {target}", hidden=("invite",)),
    "password.change": Wording("Password changed", "{who} changed their password"),
    "two_factor.on": Wording("Two-factor sign-in turned on",
                             "{who} turned on two-factor sign-in"),
    "two_factor.off": Wording("Two-factor sign-in turned off",
                              "{who} turned off two-factor sign-in"),
    "two_factor.reset": Wording("Two-factor sign-in reset",
                                "{who} reset two-factor sign-in for {target}"),
    "recovery_codes.regenerate": Wording("New recovery codes",
                                         "{who} made a new set of recovery codes"),
    "recovery_code.use": Wording("Recovery code used", "{who} signed in with a recovery code",
                                 {"left": "Recovery codes left"}),
    "token.create": Wording("API token created", "{who} created the API token {target}",
                            {"staff": "For"}),
    "token.revoke": Wording("API token revoked", "{who} revoked the API token {target}"),
    "test_sends.code": Wording("Linking code made",
                               "{who} asked for a code to link their own phone or Telegram"),
    "test_sends.link": Wording("Own address linked",
                               "{who} linked their own {channel} address for test sends",
                               {"address": "Address"}),
    "test_sends.unlink": Wording("Own address unlinked",
                                 "{who} unlinked their own {channel} address"),
    # Supporters and the inbox
    "supporter.view": Wording("Supporter's record opened",
                              "{who} opened the record of {target}"),
    "supporter.export": Wording("Supporter's data downloaded",
                                "{who} downloaded everything held about {target}"),
    "supporter.erase": Wording("Supporter erased", "{who} erased {target}",
                               {"signatures": "Signatures withdrawn",
                                "suppression_kept": "Numbers kept only to honour a STOP"}),
    "voice.approve": Wording("Supporter's message published",
                             "{who} approved {target} for publication"),
    "voice.reject": Wording("Supporter's message rejected", "{who} rejected {target}"),
    "inbox.reply": Wording("Inbox reply sent", "{who} replied by {channel} in {target}",
                           hidden=("message",)),
    "inbox.assign": Wording("Conversation taken", "{who} took on {target}"),
    "inbox.note": Wording("Internal note added", "{who} added an internal note to {target}",
                          hidden=("message",)),
    "inbox.close": Wording("Conversation closed", "{who} closed {target}"),
    "inbox.follow_up": Wording("Follow-up recorded",
                               "{who} recorded what was done about a flagged message in "
                               "{target}", hidden=("message",)),
    "inbox.saved_reply.create": Wording("Saved reply added", "{who} saved the reply {target}"),
    "inbox.saved_reply.delete": Wording("Saved reply deleted",
                                        "{who} deleted the saved reply {target}"),
    # Event receivers (systems that are sent events)
    "receiver.add": Wording("Event receiver added", "{who} added {target} at {host}",
                            {"events": "Events sent to it"}),
    "receiver.remove": Wording("Event receiver removed", "{who} removed {target} at {host}"),
    "receiver.ping": Wording("Event receiver pinged", "{who} sent a ping to {target}",
                             {"event": "Ping event"}),
    "receiver.retry": Wording("Parked events sent again",
                              "{who} sent parked deliveries to {target} again",
                              {"deliveries": "Deliveries sent again",
                               "passed_over": "Not sent again: a later event about the same "
                                              "supporter had already gone"}),
    # Imports (bot/shell/imports.py)
    "import.suppressions": Wording(
        "Suppression list imported",
        "{who} added {new} numbers to the suppression list from {file} ({target})",
        {"rows": "Rows in the file", "already": "Already on the list, or repeated",
         "matched": "Numbers of people we know, never messaged from now on"}),
    "import.signatures": Wording(
        "Paper signatures imported",
        "{who} imported {new} paper signatures for the {petition} petition from {file} "
        "({target})",
        {"rows": "Rows in the file", "sources": "By source",
         "first_number": "Numbers from", "last_number": "Numbers to",
         "matched": "Same name and postcode as a signer with the bot",
         "already": "Already there"}),
    # The system
    "retention.run": Wording("Old personal data removed",
                             "{who} removed personal data past its keeping time", RETENTION),
}

LABELS = {  # detail keys, whatever the action
    "areas": "Postcode areas", "channel": "Channel", "channels": "Channels",
    "copy_of": "A copy of announcement", "format": "Format", "length": "Characters",
    "name": "Name", "nations": "Nations", "note": "Note", "phone": "Phone",
    "publish_consent": "Agreed to be published", "queued": "Messages queued",
    "recipients": "Messages queued", "role": "Role", "scheduled_at": "Scheduled for",
    "sign_ins_ended": "Sign-ins ended", "other_sign_ins_ended": "Other sign-ins ended",
    "status": "Status now", "template": "WhatsApp template", "test_group": "Test group only",
    "tokens_revoked": "API tokens revoked", "version": "Version", "via": "Through",
    "flagged": "Flagged as a safeguarding concern", "decision_makers": "Decision makers",
    "external": "Signatures collected elsewhere", "share_url": "Share link",
    "issue": "The whole issue", "closed": "Closed on",
}
WORDS = {"sms": "SMS", "whatsapp": "WhatsApp", "telegram": "Telegram", "csv": "CSV",
         "cli": "the command line", "api": "the staff API (a token)", **dict(NATIONS)}
SYSTEM = {"retention": "The background worker", "worker": "The background worker"}
CHANGE_PAIRS = (("from", "to"), ("before", "after"), ("previous", "new"), ("old", "new"))
CHANGE_LISTS = ("changed", "changes")
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
LONGEST = 80  # characters of a text shown in a sentence or a detail


class Recorded(Protocol):
    """An audit entry as stored (models.AuditEntry)."""

    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class Person:
    """A staff member as the log names them."""

    email: str
    name: str | None
    role: str

    def __str__(self) -> str:
        return self.name or self.email


@dataclass
class Known:
    """What the log's page looked up about the people and things its entries name."""

    zone: zoneinfo.ZoneInfo
    staff: dict[str, Person] = field(default_factory=dict)  # by email, and by str(id)
    telegram: dict[str, Person] = field(default_factory=dict)  # by Telegram user id
    announcements: dict[str, tuple[str, str]] = field(default_factory=dict)  # text, petition
    tokens: dict[str, str] = field(default_factory=dict)  # id -> its name
    saved_replies: dict[str, str] = field(default_factory=dict)  # id -> its title
    petitions: dict[str, str] = field(default_factory=dict)  # slug -> its code
    link: Callable[[str, str], str | None] = lambda kind, ident: None  # a target's page


@dataclass(frozen=True)
class Said:
    """One entry in words: the sentence (with a link to what it names, where it has a
    page) and the other details as (label, value)."""

    sentence: Markup
    details: list[tuple[str, str]]


def kind_of(action: str) -> str:
    """The action's kind, as the filter shows it."""
    wording = WORDINGS.get(action)
    return wording.kind if wording else humanised(action).capitalize()


def who(actor: str, known: Known) -> str:
    """'Sam (admin)', 'The operator (command line)', 'The background worker'."""
    if actor == OPERATOR or actor.startswith("cli:"):
        return "The operator (command line)"
    if actor in SYSTEM:
        return SYSTEM[actor]
    if actor.startswith("telegram:"):
        person = known.telegram.get(actor.removeprefix("telegram:"))
        return f"{person} ({person.role}) in Telegram" if person else \
            f"A staff member in Telegram (number {actor.removeprefix('telegram:')})"
    person = known.staff.get(actor)
    return f"{person} ({person.role})" if person else actor


def describe(entry: Recorded, known: Known) -> Said:
    """The entry as a sentence and its remaining details."""
    wording = WORDINGS.get(entry.action)
    detail = dict(entry.detail or {})
    values: dict[str, Any] = {k: words(v, known.zone) for k, v in detail.items()}
    values.update(who=who(entry.actor, known), actor=entry.actor,
                  target=_target(entry.target, known))
    used = {"who", "actor", "target"}
    if wording is not None and set(_fields(wording.sentence)) <= values.keys():
        sentence = Markup(wording.sentence).format(**values)
        used |= set(_fields(wording.sentence))
    else:
        sentence = Markup("{who}: {action}").format(who=values["who"],
                                                    action=humanised(entry.action))
        if entry.target:
            sentence += Markup(" ({target})").format(target=values["target"])
    hidden = (wording.hidden if wording else ()) + tuple(used)
    labels = {**LABELS, **(wording.labels if wording else {})}
    return Said(sentence, _details(detail, hidden, labels, known.zone))


def humanised(name: str) -> str:
    """'inbox.saved_reply.create' -> 'inbox saved reply create'."""
    return re.sub(r"[._\-:]+", " ", name).strip()


def words(value: Any, zone: zoneinfo.ZoneInfo) -> str:
    """A stored value as a person would read it: yes/no, none, 1,234, 27 Nov 2026 14:05,
    'SMS, WhatsApp', and a change as 'from X to Y'."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,}"
    if isinstance(value, str):
        return _text(value, zone)
    if isinstance(value, Mapping):
        change = _change(value)
        if change is not None:
            return f"from {_quoted(change[0], zone)} to {_quoted(change[1], zone)}"
        if {"source", "count"} <= value.keys():
            return f"{words(value['count'], zone)} on {words(value['source'], zone)}"
        return "; ".join(f"{_label(k, LABELS)}: {words(v, zone)}" for k, v in value.items())
    if isinstance(value, Iterable):
        return ", ".join(words(v, zone) for v in value) or "none"
    return str(value)


def _target(target: str | None, known: Known) -> Markup | str:
    """What an entry's target names, in words, linked to its page when it has one."""
    if not target:
        return ""
    kind, _, ident = target.partition(":")
    phrase = _phrase(kind, ident, known)
    url = known.link(kind, ident)
    return Markup('<a href="{}">{}</a>').format(url, phrase) if url else phrase


def _phrase(kind: str, ident: str, known: Known) -> str:
    if kind == "announcement":
        if ident not in known.announcements:
            return f"number {ident}"
        text, petition = known.announcements[ident]
        return f"{_quoted(text, known.zone)} for {petition}"
    if kind == "staff":
        person = known.staff.get(ident)
        return str(person) if person else ident
    if kind == "petition":
        return known.petitions.get(ident, ident)
    if kind == "token":
        return _quoted(known.tokens[ident], known.zone) if ident in known.tokens else \
            f"number {ident}"
    if kind == "saved_reply":
        return _quoted(known.saved_replies[ident], known.zone) if (
            ident in known.saved_replies) else f"number {ident} (since deleted)"
    if kind == "text":
        return f"“{humanised(ident)}”"
    if kind == "voice":
        return f"the supporter's message {ident}"
    return f"{humanised(kind)} {ident}".strip()


def _details(detail: Mapping[str, Any], hidden: Iterable[str], labels: Mapping[str, str],
             zone: zoneinfo.ZoneInfo) -> list[tuple[str, str]]:
    """(label, value) for each detail the sentence did not tell: a change of the whole
    ({"previous": x, "new": y}) as one line, a list of changes ({"changed": {field:
    change}}) as one line per field; empty values are left out."""
    lines = []
    shown = {k: v for k, v in detail.items() if k not in hidden}
    for before, after in CHANGE_PAIRS:
        if before in shown and after in shown:
            change = {before: shown.pop(before), after: shown.pop(after)}
            lines.append((labels.get("change", "Changed"), words(change, zone)))
    for key, value in shown.items():
        if value in (None, "", [], {}):
            continue
        if key in CHANGE_LISTS and isinstance(value, Mapping):
            lines += [(_label(k, labels), _change_words(v, zone)) for k, v in value.items()]
        else:
            lines.append((_label(key, labels), words(value, zone)))
    return lines


def _change(value: Mapping[str, Any]) -> tuple[Any, Any] | None:
    for before, after in CHANGE_PAIRS:
        if value.keys() == {before, after}:
            return value[before], value[after]
    return None


def _change_words(value: Any, zone: zoneinfo.ZoneInfo) -> str:
    """A field's change, whether stored as {"before", "after"}-like or [before, after]."""
    if isinstance(value, list | tuple) and len(value) == 2:
        value = {"from": value[0], "to": value[1]}
    return words(value, zone)


def _text(value: str, zone: zoneinfo.ZoneInfo) -> str:
    if value in WORDS:
        return WORDS[value]
    if ISO_DAY.fullmatch(value):
        return _day(dt.date.fromisoformat(value))
    if ISO_DAY.match(value) and "T" in value:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return _short(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        local = moment.astimezone(zone)
        return f"{_day(local)} {local:%H:%M}"
    return _short(value)


def _quoted(value: Any, zone: zoneinfo.ZoneInfo) -> str:
    """A text in quotation marks (a title, a wording); other values as they are."""
    shown = words(value, zone)
    return f"“{shown}”" if isinstance(value, str) and " " in value.strip() else shown


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= LONGEST else flat[:LONGEST - 1].rstrip() + "…"


def _label(key: str, labels: Mapping[str, str]) -> str:
    return labels.get(key) or humanised(key).capitalize()


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


__all__ = ["WORDINGS", "Known", "Person", "Said", "Wording", "describe", "humanised",
           "kind_of", "who", "words"]
