"""bot.shell.people: who a message is from, read in one statement (FIND) as named, typed
facts, on SQLite and on PostgreSQL (TEST_DATABASE_URL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from bot.core.conversation import Channel, State, Step
from bot.shell import people
from bot.shell.service import Received, Service

AMIRA = "+447700900123"
SIGNING = ("Hi", "SIGN", "YES", "Amira Khan", "SW1A 1AA", "YES", "YES")


@pytest.fixture
def finds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every FIND people.load runs (by name: the inbound path's statements run on the
    driver's cursor, which engine events do not see)."""
    seen: list[str] = []
    find = people.find

    def counted(*args: Any, **kwargs: Any) -> people.Found:
        seen.append("FIND")
        return find(*args, **kwargs)

    monkeypatch.setattr(people, "find", counted)
    return seen


def says(service: Service, channel: Channel, *texts: str) -> None:
    for n, text in enumerate(texts):
        service.receive(Received(channel, AMIRA, text, f"{channel.value}-{n}", phone=AMIRA))


def load(service: Service, channel: Channel, provider_id: str) -> people.Sender | people.Replay:
    with service.transactions.begin() as work:
        return people.load(work, channel, AMIRA, AMIRA, provider_id, False,
                           dt.datetime.now(dt.UTC))


def test_amiras_facts_come_back_named_and_typed(service: Service) -> None:
    says(service, Channel.SMS, *SIGNING)
    sender = load(service, Channel.SMS, "sms-next")

    assert isinstance(sender, people.Sender)
    assert sender.phone == AMIRA and sender.supporter_id is not None
    assert sender.opted_out_at is None and sender.last_inbound_at is not None
    assert sender.last_inbound_at.tzinfo == dt.UTC  # aware UTC on both databases
    assert sender.reply_times and all(isinstance(t, float) for t in sender.reply_times)
    assert sender.state == State(step=Step.SIGNED, petition="sirt", options=sender.state.options,
                                 consent_version="2026-11-27")  # of the updates question
    [signature] = sender.signatures
    assert (signature.petition, signature.number, signature.channel) == ("sirt", 1, Channel.SMS)
    assert (signature.name, signature.postcode, signature.country) == (
        "Amira Khan", "SW1A 1AA", "")
    assert signature.signed_at.tzinfo == dt.UTC
    assert sender.subscribed == {"sirt"}


def test_amiras_first_whatsapp_message_finds_her_once_by_her_number(
        service: Service, finds: list[str]) -> None:
    says(service, Channel.SMS, *SIGNING)
    finds.clear()
    sender = load(service, Channel.WHATSAPP, "whatsapp-0")

    assert isinstance(sender, people.Sender)
    assert [s.petition for s in sender.signatures] == ["sirt"]  # her signature by SMS
    assert sender.subscribed == frozenset()  # updates were asked for on SMS only
    assert len(finds) == 1  # enrolling her WhatsApp needed no second look


def test_a_replay_is_answered_from_what_the_first_copy_said(service: Service) -> None:
    says(service, Channel.SMS, "Hi")
    replay = load(service, Channel.SMS, "sms-0")

    assert isinstance(replay, people.Replay)
    assert "Hello from PLANETS" in replay.replies[0].text
    assert replay.replies[0].options == ("SIGN", "MORE", "INFO", "HELP")
