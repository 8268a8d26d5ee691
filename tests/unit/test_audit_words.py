"""The audit log in words: every action the code records has a sentence (found by reading
the source, so an action added anywhere later fails here until it has one), entries read
as a person would say them, and an action nobody worded still reads."""

from __future__ import annotations

import ast
import datetime as dt
import html
import itertools
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.shell.staff import OPERATOR
from tests.conftest import ROOT
from webhooks.console.audit_words import WORDINGS, Known, Person, describe, kind_of, who, words

LONDON = zoneinfo.ZoneInfo("Europe/London")
SOURCES = ("bot", "webhooks")
# (module, function) -> the position of the action among its arguments
AUDITORS = {("bot.shell.staff", "audit"): 2, ("webhooks.console.access", "record"): 1}


# Every action recorded in the code -----------------------------------------------------

class Unresolved(Exception):
    """An action name the reading cannot work out: write it as a literal."""


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    parents: dict[ast.AST, ast.AST]
    auditors: dict[str, str]   # a name called here -> the auditor it is ("module.function")
    modules: dict[str, str]    # an alias here -> the module it names

    def function_of(self, node: ast.AST) -> ast.FunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef):
                return node
        return None

    def functions(self, name: str) -> list[ast.FunctionDef]:
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.FunctionDef)
                and n.name == name]

    def calls_to(self, name: str) -> list[ast.Call]:
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name) and n.func.id == name]


def modules() -> Iterator[Module]:
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            parents = {child: node for node in ast.walk(tree)
                       for child in ast.iter_child_nodes(node)}
            auditors, aliases = {}, {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    for alias in node.names:
                        if (node.module, alias.name) in AUDITORS:
                            auditors[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            for (module, function) in AUDITORS:
                if module == name:
                    auditors[function] = f"{module}.{function}"
            yield Module(name, path, tree, parents, auditors, aliases)


def action_arguments(module: Module) -> Iterator[tuple[ast.expr | None, ast.Call]]:
    """(the expression naming the action, the call) of every audit entry made here."""
    for call in (n for n in ast.walk(module.tree) if isinstance(n, ast.Call)):
        auditor = _auditor(module, call.func)
        inside = module.function_of(call)
        if inside is not None and (module.name, inside.name) in AUDITORS:
            continue  # the auditor's own body passes its parameter on
        if auditor is not None:
            position = AUDITORS[tuple(auditor.rsplit(".", 1))]  # type: ignore[index]
            keyword = next((k.value for k in call.keywords if k.arg == "action"), None)
            yield (call.args[position] if len(call.args) > position else keyword), call
        elif _makes_an_entry(call):
            yield next(k.value for k in call.keywords if k.arg == "action"), call


def _auditor(module: Module, func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return module.auditors.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        named = f"{module.modules.get(func.value.id, '')}.{func.attr}"
        return named if tuple(named.rsplit(".", 1)) in AUDITORS else None
    return None


def _makes_an_entry(call: ast.Call) -> bool:
    """AuditEntry(action=...) or insert(AuditEntry).values(action=...)."""
    if not any(k.arg == "action" for k in call.keywords):
        return False
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "AuditEntry"
    return isinstance(func, ast.Attribute) and func.attr == "values" and isinstance(
        func.value, ast.Call) and any(isinstance(a, ast.Name) and a.id == "AuditEntry"
                                      for a in func.value.args)


def resolve(module: Module, node: ast.expr | None, depth: int = 0) -> set[str]:
    """Every string the expression can be, followed through variables, parameters (the
    calls in the same module) and helper functions' returns."""
    if node is None or depth > 8:
        raise Unresolved("nothing to read")
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return resolve(module, node.body, depth + 1) | resolve(module, node.orelse, depth + 1)
    if isinstance(node, ast.JoinedStr):
        pieces = [{str(v.value)} if isinstance(v, ast.Constant) else
                  resolve(module, v.value, depth + 1)  # type: ignore[attr-defined]
                  for v in node.values]
        return {"".join(p) for p in itertools.product(*pieces)}
    if isinstance(node, ast.Name):
        return _name(module, node, depth)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        returns = [r.value for f in module.functions(node.func.id) for r in ast.walk(f)
                   if isinstance(r, ast.Return)]
        if returns:
            return set().union(*(resolve(module, r, depth + 1) for r in returns))
    raise Unresolved(ast.unparse(node))


def _name(module: Module, node: ast.Name, depth: int) -> set[str]:
    """A variable assigned in its function, a parameter of it, or a module's constant."""
    function = module.function_of(node)
    values = _assigned(function, node.id) if function is not None else []
    if not values and function is not None and node.id in [a.arg for a in function.args.args]:
        position = [a.arg for a in function.args.args].index(node.id)
        values = [call.args[position] if len(call.args) > position else next(
            (k.value for k in call.keywords if k.arg == node.id), None)
            for call in module.calls_to(function.name)]
        if not values:
            raise Unresolved(f"{node.id} of {function.name}(), which nothing here calls")
    if not values:
        values = _assigned(module.tree, node.id, top=True)
    if not values:
        raise Unresolved(node.id)
    return set().union(*(resolve(module, value, depth + 1) for value in values))


def _assigned(scope: ast.AST, name: str, top: bool = False) -> list[ast.expr | None]:
    nodes = scope.body if top and isinstance(scope, ast.Module) else ast.walk(scope)
    return [n.value for n in nodes if isinstance(n, ast.Assign | ast.AnnAssign)
            and any(isinstance(t, ast.Name) and t.id == name
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))]


def recorded_actions() -> dict[str, str]:
    """Every action name the code records -> where (path:line)."""
    found: dict[str, str] = {}
    for module in modules():
        for expression, call in action_arguments(module):
            where = f"{module.path.relative_to(ROOT)}:{getattr(call, 'lineno', '?')}"
            try:
                names = resolve(module, expression)
            except Unresolved as error:
                pytest.fail(f"{where}: cannot tell which action {error} records; name it "
                            "with a string literal")
            found.update({name: where for name in names})
    return found


def test_the_source_reading_finds_the_actions_recorded_in_every_way() -> None:
    found = recorded_actions()
    for action in ("login", "login.failed",            # accounts.audit(...) in a view
                   "announcement.pause",                # through _act(..., action, ...)
                   "announcement.resume",               # f"announcement.{action}" (CLI)
                   "voice.reject",                      # a conditional expression
                   "inbox.reply", "retention.run"):     # AuditEntry(action=ACTION)
        assert action in found, action


def test_every_action_recorded_anywhere_has_a_sentence() -> None:
    missing = {a: where for a, where in recorded_actions().items() if a not in WORDINGS}
    assert not missing, (
        "add these actions to WORDINGS in webhooks/console/audit_words.py: "
        + ", ".join(f"{a} ({where})" for a, where in sorted(missing.items())))


def test_every_sentence_names_who_did_it_or_says_who() -> None:
    for action, wording in WORDINGS.items():
        assert wording.sentence.startswith(("{who}", "A ")), action
        assert wording.kind[:1].isupper() and not wording.kind.endswith("."), action


# Entries in words -------------------------------------------------------------------------

@dataclass
class Entry:
    actor: str
    action: str
    target: str | None = None
    detail: dict[str, Any] | None = None


SAM = Person("sam@planets.example", "Sam Patel", "admin")
JO = Person("jo@planets.example", None, "editor")
KNOWN = Known(
    LONDON, staff={SAM.email: SAM, JO.email: JO, "7": JO}, telegram={"5550001": SAM},
    announcements={"12": ("Thank you for signing: the hand-in is on Friday at 11 in "
                          "Westminster.", "SIRT")},
    tokens={"3": "CRM sync"}, saved_replies={"4": "Hand-in date"}, petitions={"sirt": "SIRT"})


def plain(entry: Entry, known: Known = KNOWN) -> tuple[str, list[tuple[str, str]]]:
    said = describe(entry, known)
    return html.unescape(re.sub(r"<[^>]+>", "", str(said.sentence))), said.details


@pytest.mark.parametrize(("entry", "sentence", "details"), [
    (Entry(SAM.email, "announcement.approve", "announcement:12",
           {"channels": ["sms", "whatsapp"], "nations": [], "areas": [], "test_group": False,
            "template": None, "length": 64, "scheduled_at": "2026-11-27T14:05:00+00:00",
            "queued": 1234}),
     "Sam Patel (admin) approved the announcement “Thank you for signing: the hand-in is on "
     "Friday at 11 in Westminster.” for SIRT",
     [("Channels", "SMS, WhatsApp"), ("Test group only", "no"), ("Characters", "64"),
      ("Scheduled for", "27 Nov 2026 14:05"), ("Messages queued", "1,234")]),
    (Entry("cli:deploy", "staff.add", f"staff:{JO.email}", {"role": "editor"}),
     "The operator (command line) added editor jo@planets.example", []),
    (Entry(OPERATOR, "staff.role", f"staff:{JO.email}", {"from": "editor", "to": "admin"}),
     "The operator (command line) changed the role of jo@planets.example from editor to "
     "admin", []),
    (Entry(SAM.email, "voice.approve", "voice:9", {"flagged": False, "publish_consent": True}),
     "Sam Patel (admin) approved the supporter's message 9 for publication",
     [("Flagged as a safeguarding concern", "no"), ("Agreed to be published", "yes")]),
    (Entry("telegram:5550001", "announcement.cancel", "announcement:99", {"via": "telegram"}),
     "Sam Patel (admin) in Telegram cancelled the announcement number 99",
     [("Through", "Telegram")]),
    (Entry("nobody@example.org", "login.failed", None, {"address": "3f9a0c1d2e4b"}),
     "A sign-in as nobody@example.org was refused: the email and password did not match",
     [("From (a disguised network address)", "3f9a0c1d2e4b")]),
    (Entry(SAM.email, "petition.edit", "petition:sirt", {"version": 4, "changed": {
        "summary": {"before": "Fund SIRT now", "after": "Fund SIRT for NET patients"},
        "goal": {"before": 100000, "after": 150000},
        "closed": {"before": None, "after": "2026-12-01"}}}),
     "Sam Patel (admin) edited the petition SIRT",
     [("Version", "4"), ("Summary", "from “Fund SIRT now” to “Fund SIRT for NET patients”"),
      ("Goal", "from 100,000 to 150,000"), ("Closed on", "from none to 1 Dec 2026")]),
    (Entry(JO.email, "text.save", "text:greeting", {"previous": "Hello!", "new": "Hi there"}),
     "jo@planets.example (editor) changed the bot's words “greeting”",
     [("Wording", "from Hello! to “Hi there”")]),
    (Entry(JO.email, "token.revoke", "token:3"),
     "jo@planets.example (editor) revoked the API token “CRM sync”", []),
    (Entry(JO.email, "test_sends.unlink", "staff:7", {"channel": "whatsapp"}),
     "jo@planets.example (editor) unlinked their own WhatsApp address", []),
    (Entry("retention", "retention.run", None, {"inbound_texts": 3, "people": 0}),
     "The background worker removed personal data past its keeping time",
     [("Message texts blanked", "3"), ("People forgotten", "0")]),
    (Entry(JO.email, "inbox.saved_reply.delete", "saved_reply:40"),
     "jo@planets.example (editor) deleted the saved reply number 40 (since deleted)", []),
])
def test_entries_read_as_sentences(entry: Entry, sentence: str,
                                   details: list[tuple[str, str]]) -> None:
    assert plain(entry) == (sentence, details)


def test_an_action_nobody_worded_still_reads_with_its_detail_in_words() -> None:
    entry = Entry(SAM.email, "petition.archive_old", "petition:sirt",
                  {"dry_run": False, "kept": None, "count_changes": {"from": 1, "to": 2},
                   "at": "2026-07-01T09:30:00+00:00"})
    assert plain(entry) == ("Sam Patel (admin): petition archive old (SIRT)", [
        ("Dry run", "no"), ("Count changes", "from 1 to 2"), ("At", "1 Jul 2026 10:30")])
    assert kind_of("petition.archive_old") == "Petition archive old"
    assert kind_of("announcement.approve") == "Announcement approved"


def test_no_entry_shows_raw_values_or_internal_names() -> None:
    for action in (a for a, w in WORDINGS.items() if "{actor}" not in w.sentence):
        sentence, details = plain(Entry("cli:root", action, "announcement:1", {
            "flag": True, "none": None, "role": "viewer", "from": "a", "to": "b",
            "channel": "sms"}))
        shown = sentence + " ".join(v for _, v in details)
        assert not re.search(r"\b(True|False|None|cli:root)\b|[{}]", shown), (action, shown)
        assert action not in shown


def test_a_link_goes_to_the_page_of_what_the_entry_names() -> None:
    known = Known(LONDON, link=lambda kind, ident: f"/staff/{kind}s/{ident}")
    said = describe(Entry(SAM.email, "inbox.close", "conversation:5"), known)
    assert str(said.sentence) == ('sam@planets.example closed '
                                  '<a href="/staff/conversations/5">conversation 5</a>')


def test_text_from_staff_is_escaped_in_the_sentence() -> None:
    known = Known(LONDON, saved_replies={"1": "<b>Hi</b> & bye"})
    said = describe(Entry(SAM.email, "inbox.saved_reply.create", "saved_reply:1"), known)
    assert "&lt;b&gt;Hi&lt;/b&gt; &amp; bye" in str(said.sentence)


@pytest.mark.parametrize(("actor", "said"), [
    ("cli:root", "The operator (command line)"), (OPERATOR, "The operator (command line)"),
    ("worker", "The background worker"), (SAM.email, "Sam Patel (admin)"),
    ("telegram:42", "A staff member in Telegram (number 42)"),
    ("someone@else.example", "someone@else.example")])
def test_who_did_it(actor: str, said: str) -> None:
    assert who(actor, KNOWN) == said


@pytest.mark.parametrize(("value", "said"), [
    (None, "none"), (True, "yes"), (False, "no"), (0, "0"), (49257, "49,257"), ([], "none"),
    (["england", "northern_ireland"], "England, Northern Ireland"),
    ([{"source": "Change.org", "count": 49257}], "49,257 on Change.org"),
    ("2026-03-29T00:30:00+00:00", "29 Mar 2026 00:30"),  # GMT still, before 01:00 UTC
    ("2026-03-29T01:30:00+00:00", "29 Mar 2026 02:30"),  # BST from then
    ("2026-12-01", "1 Dec 2026"), ("x" * 200, "x" * 79 + "…"),
    ({"old": "viewer", "new": "editor"}, "from viewer to editor"),
    ({"a_b": 1, "c": [1, 2]}, "A b: 1; C: 1, 2"),
])
def test_values_in_words(value: Any, said: str) -> None:
    assert words(value, LONDON) == said


def test_the_times_are_in_the_charitys_zone() -> None:
    moment = dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC).isoformat()
    assert words(moment, zoneinfo.ZoneInfo("Europe/London")) == "1 Jul 2026 09:00"
