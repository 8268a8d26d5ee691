"""The signatures feed (DESIGN §9): admins page through a petition's current signatures in
signing order, each exactly once, even while people sign and withdraw; a withdrawn
signature is never returned; a bad cursor or limit is a 400 naming it. Every answer is
held to the API's OpenAPI document (api_helpers.call)."""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel
from bot.shell import signature_feed
from bot.shell.service import Handled, Received, Service
from models import AuditEntry, Petition, Signature
from tests.conftest import PG_URL
from tests.integration.api_helpers import API, call, document, issue_tokens
from tests.integration.console_helpers import add_people, email_of

FEED = "/api/v1/signatures"
_sids = itertools.count(1)


@pytest.fixture
def tokens(sessions: sessionmaker[Session], app: Flask) -> dict[str, str]:
    return issue_tokens(sessions, add_people(sessions))


def says(service: Service, channel: Channel, address: str, *bodies: str) -> list[Handled]:
    phone = address if channel != Channel.TELEGRAM else ""
    return [service.receive(Received(channel, address, body, f"SM{next(_sids):032x}",
                                     phone=phone)) for body in bodies]


def signs(service: Service, address: str, name: str, postcode: str,
          channel: Channel = Channel.SMS) -> None:
    said = says(service, channel, address, "Hi", "SIGN", "YES", name, postcode, "YES", "NO")
    assert said[5].signed, [h.step for h in said]


def withdraws(service: Service, address: str, channel: Channel = Channel.SMS) -> None:
    """DELETE and its confirmation: the person, and their signature, are erased."""
    says(service, channel, address, "DELETE", "YES")


def page(client: FlaskClient, token: str, **params: Any) -> dict[str, Any]:
    response = call(client, "GET", f"{FEED}?{urlencode({'petition': 'sirt', **params})}",
                    token)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def every_page(client: FlaskClient, token: str, limit: int,
               after: str | None = None) -> Iterator[dict[str, Any]]:
    """From `after` (the start) until a page says there is no next one."""
    while True:
        found = page(client, token, limit=limit, **({"after": after} if after else {}))
        yield found
        if found["next"] is None:
            return
        after = found["next"]


def current(sessions: sessionmaker[Session]) -> dict[int, str]:
    """The petition's signatures in the database: number -> name."""
    with sessions() as session:
        return dict(session.execute(
            select(Signature.number, Signature.name).join(Petition)
            .where(Petition.slug == "sirt")).all())


PEOPLE = [("+447700900101", "Amira Khan", "SW1A 1AA", Channel.SMS),
          ("+447700900102", "Ben Walsh", "EH1 1YZ", Channel.WHATSAPP),
          ("4242001", "Carys Evans", "CF10 1EP", Channel.TELEGRAM),
          ("+447700900104", "Dan Reid", "BT1 5GS", Channel.SMS),
          ("+447700900105", "Erin Jones", "M1 1AE", Channel.SMS),
          ("+447700900106", "Fiona Smith", "G2 1DY", Channel.WHATSAPP),
          ("+447700900107", "Gareth Davies", "LS1 4DY", Channel.SMS)]


def test_a_crm_pages_through_every_signature_once_in_signing_order(
        client: FlaskClient, tokens: dict[str, str], service: Service,
        sessions: sessionmaker[Session]) -> None:
    for address, name, postcode, channel in PEOPLE:
        signs(service, address, name, postcode, channel)
    pages = list(every_page(client, tokens["admin"], limit=3))

    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    items = [item for p in pages for item in p["items"]]
    assert [i["number"] for i in items] == [1, 2, 3, 4, 5, 6, 7]
    assert [(i["name"], i["postcode"], i["channel"]) for i in items] == [
        (name, postcode, channel.value) for _, name, postcode, channel in PEOPLE]
    assert [i["nation"] for i in items[:4]] == [
        "england", "scotland", "wales", "northern_ireland"]
    assert {i["number"]: i["name"] for i in items} == current(sessions)
    assert pages[0]["next"] == signature_feed.cursor("sirt", 3)
    assert pages[-1]["resume"] == signature_feed.cursor("sirt", 7)
    # Later: only what was signed since, from where the last page ended.
    signs(service, "+447700900108", "Hannah Price", "CF10 1EP")
    since = page(client, tokens["admin"], after=pages[-1]["resume"])
    assert [(i["number"], i["name"]) for i in since["items"]] == [(8, "Hannah Price")]
    assert since["next"] is None
    nothing_new = page(client, tokens["admin"], after=since["resume"])
    assert nothing_new == {"items": [], "next": None, "resume": since["resume"]}


def test_a_page_of_exactly_the_rest_says_there_is_no_next_one(
        client: FlaskClient, tokens: dict[str, str], service: Service) -> None:
    for address, name, postcode, channel in PEOPLE[:4]:
        signs(service, address, name, postcode, channel)
    assert [len(p["items"]) for p in every_page(client, tokens["admin"], limit=2)] == [2, 2]
    whole = page(client, tokens["admin"], limit=4)
    assert len(whole["items"]) == 4 and whole["next"] is None
    assert whole["resume"] == signature_feed.cursor("sirt", 4)


def test_before_anyone_signs_the_feed_is_empty(client: FlaskClient, tokens: dict[str, str],
                                               service: Service) -> None:
    streamed = client.get(f"{FEED}?petition=sirt", base_url=API,
                          headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert streamed.is_streamed and streamed.mimetype == "application/json"
    streamed.close()
    response = call(client, "GET", f"{FEED}?petition=sirt", tokens["admin"])
    assert response.get_json() == {"items": [], "next": None, "resume": None}


def test_a_withdrawn_signature_is_not_returned(
        client: FlaskClient, tokens: dict[str, str], service: Service,
        sessions: sessionmaker[Session]) -> None:
    for address, name, postcode, channel in PEOPLE[:3]:
        signs(service, address, name, postcode, channel)
    withdraws(service, PEOPLE[1][0], PEOPLE[1][3])  # Ben erases himself: signature 2

    items = page(client, tokens["admin"])["items"]
    assert [(i["number"], i["name"]) for i in items] == [(1, "Amira Khan"), (3, "Carys Evans")]
    assert current(sessions) == {1: "Amira Khan", 3: "Carys Evans"}
    # Numbers are never reused: Ben signing again is number 4.
    signs(service, PEOPLE[1][0], "Ben Walsh", "EH1 1YZ", PEOPLE[1][3])
    assert [i["number"] for i in page(client, tokens["admin"])["items"]] == [1, 3, 4]


def test_only_admins_read_it_and_each_page_read_is_audited_in_their_name(
        client: FlaskClient, tokens: dict[str, str], service: Service,
        sessions: sessionmaker[Session]) -> None:
    signs(service, *PEOPLE[0][:3])
    assert call(client, "GET", f"{FEED}?petition=sirt").status_code == 401
    assert call(client, "GET", f"{FEED}?petition=sirt", "pbt_nope").status_code == 401
    for role in ("viewer", "editor"):
        refused = call(client, "GET", f"{FEED}?petition=sirt", tokens[role])
        assert refused.status_code == 403 and "admin" in refused.get_json()["error"]
        assert "Amira" not in refused.get_data(as_text=True)
    with sessions() as session:
        assert session.scalars(select(AuditEntry).where(
            AuditEntry.action == "export.signatures")).all() == []

    page(client, tokens["admin"], limit=5)
    with sessions() as session:
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "export.signatures")).one()
    assert (entry.actor, entry.target) == (email_of("admin"), "petition:sirt")
    assert entry.detail == {"via": "api", "after": 0, "limit": 5}


def _cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"),
    ({"limit": "10001"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": ""}, "limit"),
    ({"limit": "\u0663"}, "limit"),  # an Arabic-Indic three: a digit, but not one of ours
    ({"after": "not a cursor"}, "after"),
    ({"after": ""}, "after"),
    ({"after": _cursor_of("sirt:")}, "after"),
    ({"after": _cursor_of("sirt:-3")}, "after"),
    ({"after": _cursor_of("sirt:99999999999999999999")}, "after"),
    ({"after": _cursor_of("sirt")}, "after"),
    ({"after": signature_feed.cursor("another-petition", 3)}, "after"),
    ({"petition": ""}, "petition"),
])
def test_a_bad_cursor_limit_or_petition_is_a_400_naming_it(
        client: FlaskClient, tokens: dict[str, str], service: Service,
        params: dict[str, str], field: str) -> None:
    refused = call(client, "GET", f"{FEED}?{urlencode({'petition': 'sirt', **params})}",
                   tokens["admin"])
    assert refused.status_code == 400
    assert refused.get_json()["field"] == field and refused.get_json()["error"]


def test_no_petition_named_is_a_400_and_an_unknown_one_a_404(
        client: FlaskClient, tokens: dict[str, str]) -> None:
    missing = call(client, "GET", FEED, tokens["admin"])
    assert missing.status_code == 400 and missing.get_json()["field"] == "petition"
    unknown = call(client, "GET", f"{FEED}?petition=nope", tokens["admin"])
    assert unknown.status_code == 404


def test_the_documented_limits_are_the_ones_enforced(app: Flask) -> None:
    operation = document(app)["paths"][FEED]["get"]
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["default"], limit["maximum"]) == (signature_feed.DEFAULT_LIMIT,
                                                   signature_feed.MAX_LIMIT)
    assert operation["x-role"] == "admin"


def test_a_cursor_round_trips_and_names_its_petition() -> None:
    made = signature_feed.cursor("sirt", 1234)
    assert signature_feed.position("sirt", made) == 1234
    assert "=" not in made and "1234" not in made  # opaque, and safe in a query string
    assert signature_feed.position("sirt", None) == 0
    with pytest.raises(signature_feed.Invalid):
        signature_feed.position("other", made)


# Signing and withdrawing while the feed is read -------------------------------------------

FIRST = ("Imran", "Jess", "Kieran", "Lucy", "Mohammed", "Niamh", "Owen", "Priya")
LAST = ("Taylor", "Brown", "Wilson", "Thomas")


@dataclass
class Follower:
    """A CRM that keeps up: pages from where it left off until the signing is over."""

    client: FlaskClient
    token: str
    done: threading.Event
    reading: threading.Event = field(default_factory=threading.Event)  # read once
    seen: list[int] = field(default_factory=list)  # every number served, in order
    passes: list[tuple[set[int], list[int]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def follow(self) -> None:
        after: str | None = None
        for _ in range(400):  # bounded: a few hundred requests at most
            finished = self.done.is_set()  # read before the page: a last catch-up after
            for found in every_page(self.client, self.token, limit=5, after=after):
                self.seen += [i["number"] for i in found["items"]]
                after = found["resume"]
            self.reading.set()
            if finished:
                return
            time.sleep(0.02)
        self.problems.append("the signing did not finish")

    def pass_from_the_start(self, before: set[int]) -> list[int]:
        """One full pass; `before` is what existed when it began."""
        numbers = [i["number"] for p in every_page(self.client, self.token, limit=7)
                   for i in p["items"]]
        self.passes.append((before, numbers))
        return numbers


def test_signatures_made_and_withdrawn_while_a_crm_follows_the_feed_come_exactly_once(
        app: Flask, tokens: dict[str, str], service: Service,
        sessions: sessionmaker[Session]) -> None:
    """Threads sign through the real Service (a quarter of the people then withdraw) while
    one reader follows the feed from cursor to cursor and another pages it from the start
    again and again. On PostgreSQL the signers take their numbers under the petition row's
    lock at the same moments; on SQLite they take turns, and the readers must not hold
    them up."""
    done = threading.Event()
    follower = Follower(app.test_client(), tokens["admin"], done)
    passer = Follower(app.test_client(), tokens["admin"], done)
    withdrawn: set[str] = set()

    def signer(thread: int) -> None:
        assert follower.reading.wait(timeout=60)  # the feed is being read from the start
        for person in range(8):
            address = f"+4477009{thread:02d}{person:03d}"
            name = f"{FIRST[person]} {LAST[thread]}"  # names are letters only
            signs(service, address, name, "SW1A 1AA")
            if person % 4 == 3:
                withdraws(service, address)
                withdrawn.add(name)

    def passes() -> None:
        while not done.is_set():
            passer.pass_from_the_start(set(current(sessions)))
            time.sleep(0.05)

    readers = [threading.Thread(target=follower.follow), threading.Thread(target=passes)]
    signers = [threading.Thread(target=signer, args=(n,)) for n in range(4)]
    for thread in readers + signers:
        thread.start()
    for thread in signers:
        thread.join(timeout=300)
    done.set()
    for thread in readers:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in readers + signers)

    now = current(sessions)
    assert len(now) == 4 * 8 - len(withdrawn) and not set(now.values()) & withdrawn
    assert not follower.problems
    assert follower.seen == sorted(set(follower.seen)), "served twice or out of order"
    assert set(now) <= set(follower.seen), f"skipped: {sorted(set(now) - set(follower.seen))}"
    assert len(set(follower.seen) - set(now)) <= len(withdrawn)  # served, then withdrawn
    for before, numbers in passer.passes:
        assert numbers == sorted(set(numbers)), "a pass served one twice or out of order"
        assert before & set(now) <= set(numbers), "a pass skipped a signature"
    final = [i["number"] for p in every_page(app.test_client(), tokens["admin"], limit=10)
             for i in p["items"]]
    assert final == sorted(now)


@pytest.mark.postgres_only
def test_a_signature_still_committing_is_served_after_the_page_that_missed_it(
        app: Flask, client: FlaskClient, tokens: dict[str, str], service: Service,
        sessions: sessionmaker[Session]) -> None:
    """Hold a signing transaction open after it took its number: a page read meanwhile
    ends before it, and a signer behind it waits for the petition row; once both commit,
    the next page from the cursor has both, in order."""
    assert PG_URL
    signs(service, "+447700900101", "Amira Khan", "SW1A 1AA")
    for body in ("Hi", "SIGN", "YES", "Ben Walsh", "EH1 1YZ"):
        says(service, Channel.SMS, "+447700900102", body)
    for body in ("Hi", "SIGN", "YES", "Carys Evans", "CF10 1EP"):
        says(service, Channel.SMS, "+447700900103", body)

    ben_signs = threading.Thread(target=says, args=(
        service, Channel.SMS, "+447700900102", "YES"))
    carys_signs = threading.Thread(target=says, args=(
        service, Channel.SMS, "+447700900103", "YES"))
    with sessions.begin() as held:  # the petition row, locked as a signing locks it
        held.execute(select(Petition.id).where(Petition.slug == "sirt").with_for_update())
        ben_signs.start()
        carys_signs.start()
        time.sleep(0.3)  # both now wait on the row; the page must not wait with them
        first = page(client, tokens["admin"])
        assert [i["number"] for i in first["items"]] == [1]
    ben_signs.join(timeout=60)
    carys_signs.join(timeout=60)
    later = page(client, tokens["admin"], after=first["resume"])
    assert [i["number"] for i in later["items"]] == [2, 3]
    assert {i["name"] for i in later["items"]} == {"Ben Walsh", "Carys Evans"}
