"""A Twilio webhook's form as werkzeug reads it, and its X-Twilio-Signature: ours is exactly
what twilio's RequestValidator computes; what Twilio signs is accepted and read back field
for field; anything else is a 400 or a 403, never a 500 (DESIGN §5)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bot.channels.twilio.inbound import (
    FORM,
    MAX_FIELDS,
    authenticated_form,
    received,
    twilio_signature,
)
from bot.core.conversation import Channel
from bot.infra.settings import Settings

TOKEN = "test-auth-token-0123456789abcdef"
BASE = "https://petition.example.org"
PATH = "/twilio/messages"
SETTINGS = Settings(public_base_url=BASE, twilio_account_sid="AC" + "0" * 32,
                    twilio_auth_token=TOKEN)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
NAMES = st.sampled_from(["Body", "From", "To", "MessageSid", "NumMedia", "a", "B", "é", ""])
PAIRS = st.lists(st.tuples(st.one_of(NAMES, TEXT), TEXT), max_size=25)


def request(body: bytes, signature: str | None = None, content_type: str = FORM,
            query: str = "") -> Request:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    builder = EnvironBuilder(path=PATH, base_url=BASE, method="POST", data=body,
                             content_type=content_type, headers=headers,
                             query_string=query or None)
    return Request(builder.get_environ())


def signed(pairs: list[tuple[str, str]], url: str = BASE + PATH,
           token: str = TOKEN) -> tuple[bytes, str]:
    """A form as Twilio posts it, and Twilio's signature over its fields."""
    return (urlencode(pairs).encode(),
            RequestValidator(token).compute_signature(url, MultiDict(pairs)))


@given(st.text(min_size=1, max_size=20), st.sampled_from([
    "https://petition.example.org/twilio/messages",
    "https://petition.example.org:8443/twilio/status?d=12"]), PAIRS)
def test_our_signature_is_the_libraries(token: str, url: str,
                                        pairs: list[tuple[str, str]]) -> None:
    expected = RequestValidator(token).compute_signature(url, MultiDict(pairs))
    assert twilio_signature(token, url, pairs) == expected


@given(PAIRS)
def test_what_twilio_signs_is_accepted_and_read_field_for_field(
        pairs: list[tuple[str, str]]) -> None:
    body, signature = signed(pairs)
    form = authenticated_form(request(body, signature), SETTINGS)
    assert list(form.lists()) == list(MultiDict(pairs).lists())


@given(PAIRS, st.sampled_from(["token", "url", "field"]))
def test_a_signature_over_anything_else_is_refused(pairs: list[tuple[str, str]],
                                                   changed: str) -> None:
    body, signature = signed(
        pairs, url=BASE + "/twilio/status" if changed == "url" else BASE + PATH,
        token="another-token" if changed == "token" else TOKEN)
    if changed == "field":
        body += b"&Body=forged"
    with pytest.raises(Forbidden):
        authenticated_form(request(body, signature), SETTINGS)


def test_the_url_as_configured_with_its_port_is_accepted_and_the_query_is_signed() -> None:
    pairs = [("MessageSid", "SM" + "0" * 32), ("MessageStatus", "delivered")]
    body, signature = signed(pairs, url="https://petition.example.org:443/twilio/messages?d=12")
    form = authenticated_form(request(body, signature, query="d=12"), SETTINGS)
    assert form["MessageStatus"] == "delivered"
    with pytest.raises(Forbidden):
        authenticated_form(request(body, signature, query="d=13"), SETTINGS)


@pytest.mark.parametrize("signature", [None, "", "é" * 28, "\x00", "not base64 at all"])
def test_a_missing_or_strange_signature_is_refused(signature: str | None) -> None:
    body, _ = signed([("Body", "Hi")])
    with pytest.raises(Forbidden):
        authenticated_form(request(body, signature), SETTINGS)


def test_a_form_of_more_than_200_fields_is_a_bad_request() -> None:
    at_most = [("a", str(n)) for n in range(MAX_FIELDS)]
    body, signature = signed(at_most)
    assert len(authenticated_form(request(body, signature), SETTINGS).getlist("a")) == 200
    body, signature = signed([*at_most, ("b", "1")])
    with pytest.raises(BadRequest):
        authenticated_form(request(body, signature), SETTINGS)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "",
                                          "multipart/form-data; boundary=x"])
def test_anything_but_a_form_is_a_bad_request(content_type: str) -> None:
    body, signature = signed([("Body", "Hi")])
    with pytest.raises(BadRequest):
        authenticated_form(request(body, signature, content_type=content_type), SETTINGS)


def test_a_form_content_type_with_a_charset_is_still_a_form() -> None:
    body, signature = signed([("Body", "Hi")])
    form = authenticated_form(request(body, signature, FORM + "; charset=utf-8"), SETTINGS)
    assert form["Body"] == "Hi"


def test_without_twilio_credentials_nothing_is_accepted() -> None:
    body, signature = signed([("Body", "Hi")])
    with pytest.raises(Forbidden):
        authenticated_form(request(body, signature), Settings(public_base_url=BASE))


@pytest.mark.parametrize("body", [b"Body=\xff\xfe&From=%2B447700900123", b"\xed\xa0\x80=1"])
def test_a_body_that_is_not_utf8_is_refused_not_a_500(body: bytes) -> None:
    """Twilio sends only percent-encoded UTF-8: werkzeug reads such a body as no fields,
    which no signature of Twilio's can match."""
    _, signature = signed([("Body", "\ufffd\ufffd")])
    with pytest.raises(HTTPException) as refused:
        authenticated_form(request(body, signature), SETTINGS)
    assert refused.value.code in (400, 403)


def test_a_nul_or_a_lone_surrogate_in_the_body_is_cleaned_on_arrival() -> None:
    sid = "SM" + "a" * 32
    body = (f"MessageSid={sid}&From=%2B447700900123&Body=Hi%00the%ED%A0%80re%EF%BF%BF"
            .encode())
    message = received(MultiDict(Request(EnvironBuilder(
        method="POST", data=body, content_type=FORM).get_environ()).form))
    assert (message.channel, message.address, message.provider_id) == (
        Channel.SMS, "+447700900123", sid)
    assert "\x00" not in message.text and "\uffff" not in message.text
    assert message.text.startswith("Hithe") and message.text.endswith("re")
