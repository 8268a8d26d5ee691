"""Voices reach the moderation queue with their consent; erasure removes them."""

from __future__ import annotations

import itertools

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.core.conversation import Channel
from bot.shell.service import Received, Service
from models import ConsentRecord, Voice

_ids = itertools.count(1)


def say(service: Service, phone: str, *texts: str) -> list[str]:
    replies: list[str] = []
    for text in texts:
        handled = service.receive(Received(Channel.SMS, phone, text, f"SM{next(_ids):032x}",
                                           phone=phone))
        replies = [m.text for m in handled.replies]
    return replies


SIGN_UP = ("Hi", "SIGN", "YES", "Rhian Evans", "CF10 1EP", "YES", "NO")


def test_rhian_leaves_a_voice_that_waits_for_moderation_with_her_consent(
        service: Service, sessions: sessionmaker[Session]) -> None:
    say(service, "+447700900301", *SIGN_UP)
    said = say(service, "+447700900301", "VOICE", "Patients in Wales need this too", "YES")
    assert "Our team will read it" in said[0]
    with sessions() as session:
        voice = session.scalars(select(Voice)).one()
        consent = session.get(ConsentRecord, voice.consent_id)
    assert (voice.status, voice.publish_consent, voice.flagged, voice.nation) == (
        "pending", True, False, "wales")
    assert consent is not None and consent.purpose == "publish_voice"
    assert consent.action == "granted" and consent.channel == "sms"


def test_a_distressed_voice_is_flagged_and_signposted(
        service: Service, sessions: sessionmaker[Session]) -> None:
    say(service, "+447700900302", *SIGN_UP)
    said = say(service, "+447700900302", "VOICE", "I feel suicidal waiting for treatment")
    assert "Samaritans" in said[0]
    with sessions() as session:
        voice = session.scalars(select(Voice)).one()
    assert voice.flagged and not voice.publish_consent and voice.status == "pending"


def test_approved_voices_appear_under_info_and_erasure_removes_them(
        service: Service, sessions: sessionmaker[Session]) -> None:
    say(service, "+447700900303", *SIGN_UP)
    say(service, "+447700900303", "VOICE", "Everyone deserves NICE approved care", "YES")
    with sessions.begin() as session:
        session.scalars(select(Voice)).one().status = "approved"
    service._voices = (0.0, {})  # the once-a-minute cache, as a new minute would
    assert '"Everyone deserves NICE approved care" (Wales)' in "\n".join(
        say(service, "+447700900399", "Hi", "INFO"))
    say(service, "+447700900303", "DELETE", "YES")
    with sessions() as session:
        assert session.scalars(select(Voice)).all() == []
