"""Talk to /twilio/messages the way Twilio does: realistic form payloads, signed with
twilio's own RequestValidator, replies read back out of the TwiML."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import phonenumbers
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from models import Conversation, Identity
from tests.conftest import PUBLIC_URL, TWILIO_SID, TWILIO_TOKEN

PATH = "/twilio/messages"
SMS_NUMBER = "+447700900000"               # our SMS sender (settings.twilio_sms_from)
WHATSAPP_NUMBER = "whatsapp:+447700900000"  # our WhatsApp sender


def new_sid() -> str:
    """A fresh MessageSid: "SM" and 32 hex characters, as Twilio makes them."""
    return "SM" + secrets.token_hex(16)


def sign(params: Mapping[str, str], token: str = TWILIO_TOKEN, url: str = PUBLIC_URL + PATH) -> str:
    """X-Twilio-Signature for a form posted to `url`, computed by twilio's own library."""
    return str(RequestValidator(token).compute_signature(url, dict(params)))


def sms_payload(sender: str, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS from a UK mobile."""
    sid = sid or new_sid()
    return {
        "ToCountry": "GB", "ToState": "", "SmsMessageSid": sid, "NumMedia": "0",
        "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received",
        "FromCity": "", "Body": body, "FromCountry": "GB", "To": SMS_NUMBER, "ToZip": "",
        "NumSegments": "1", "MessageSid": sid, "AccountSid": TWILIO_SID, "From": sender,
        "ApiVersion": "2010-04-01", **extra,
    }


def whatsapp_payload(sender: str, body: str, sid: str | None = None,
                     profile_name: str = "", **extra: str) -> dict[str, str]:
    """The form Twilio posts for an inbound WhatsApp text from `sender` (a phone number)."""
    sid = sid or new_sid()
    e164 = phonenumbers.format_number(phonenumbers.parse(sender, "GB"),
                                      phonenumbers.PhoneNumberFormat.E164)
    return {
        "SmsMessageSid": sid, "NumMedia": "0", "ProfileName": profile_name,
        "MessageType": "text", "SmsSid": sid, "WaId": e164.removeprefix("+"),
        "SmsStatus": "received", "Body": body, "To": WHATSAPP_NUMBER, "NumSegments": "1",
        "ReferralNumMedia": "0", "MessageSid": sid, "AccountSid": TWILIO_SID,
        "From": "whatsapp:" + sender, "ApiVersion": "2010-04-01", **extra,
    }


def post(client: FlaskClient, params: Mapping[str, str],
         signature: str | None = None) -> TestResponse:
    """POST the form as Twilio would; `signature` overrides the correct one."""
    header = sign(params) if signature is None else signature
    return client.post(PATH, data=dict(params), headers={"X-Twilio-Signature": header},
                       base_url=PUBLIC_URL)


def replies(response: TestResponse) -> list[str]:
    """The texts of the <Message> elements in a TwiML reply."""
    assert response.status_code == 200, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.get_data())
    assert root.tag == "Response"
    return [message.text or "" for message in root.iter("Message")]


@dataclass
class Texter:
    """A supporter with a phone, writing to the bot over SMS or WhatsApp."""

    client: FlaskClient
    number: str                       # E.164, or however the supporter's network writes it
    channel: str = "sms"              # "sms" | "whatsapp"
    profile_name: str = ""
    sids: list[str] = field(default_factory=list)

    def payload(self, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
        if self.channel == "whatsapp":
            return whatsapp_payload(self.number, body, sid, self.profile_name, **extra)
        return sms_payload(self.number, body, sid, **extra)

    def send(self, body: str, sid: str | None = None, **extra: str) -> TestResponse:
        params = self.payload(body, sid, **extra)
        self.sids.append(params["MessageSid"])
        return post(self.client, params)

    def says(self, body: str, **extra: str) -> list[str]:
        """Send `body`; return the bot's replies (200 with TwiML, or the test fails)."""
        return replies(self.send(body, **extra))


def signs(texter: Texter, name: str, postcode: str, updates: str = "NO") -> list[list[str]]:
    """The whole signing, as a transcript of reply lists (one list per message sent)."""
    return [texter.says(body) for body in ("Hi", "SIGN", "YES", name, postcode, "YES", updates)]


def reaches_review(texter: Texter, name: str, postcode: str) -> None:
    """Everything up to the last question before signing ("Shall we sign ...")."""
    for body in ("Hi", "SIGN", "YES", name):
        assert texter.says(body)
    assert "Shall we sign the petition" in "\n".join(texter.says(postcode))


Script = Sequence[tuple[str, str, str]]


def converse(texter: Texter, sessions: sessionmaker[Session], script: Script) -> None:
    """Play a transcript: (what the supporter sends, part of what the bot must say, the step
    the conversation is in afterwards); "" for the bot's words means it must say nothing."""
    for body, expected, step in script:
        said = "\n".join(texter.says(body))
        if expected:
            assert expected in said, f"sent {body!r}, bot said {said!r}"
        else:
            assert said == "", f"sent {body!r}, expected silence, bot said {said!r}"
        assert step_of(sessions, texter) == step, f"after {body!r}"


def address_of(texter: Texter) -> str:
    return phonenumbers.format_number(phonenumbers.parse(texter.number, "GB"),
                                      phonenumbers.PhoneNumberFormat.E164)


def identity_of(sessions: sessionmaker[Session], texter: Texter) -> Identity | None:
    with sessions() as session:
        return session.scalar(select(Identity).where(Identity.channel == texter.channel,
                                                     Identity.address == address_of(texter)))


def step_of(sessions: sessionmaker[Session], texter: Texter) -> str | None:
    """The step the texter's conversation on their channel is in (None: no conversation)."""
    with sessions() as session:
        return session.scalar(
            select(Conversation.step).join(Identity, Identity.id == Conversation.identity_id)
            .where(Identity.channel == texter.channel, Identity.address == address_of(texter)))
