"""Our X-Twilio-Signature is exactly what twilio's RequestValidator computes, and our form
parser reads exactly what the standard library's does."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from webhooks.twilio import MAX_FIELDS, parse_form, twilio_signature

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
NAMES = st.sampled_from(["Body", "From", "To", "MessageSid", "NumMedia", "a", "B", "é", ""])


@given(st.text(min_size=1, max_size=20), st.sampled_from([
    "https://petition.example.org/twilio/messages",
    "https://petition.example.org:8443/twilio/status?d=12"]),
    st.lists(st.tuples(st.one_of(NAMES, TEXT), TEXT), max_size=25))
def test_signature_matches_the_library(token: str, url: str,
                                       pairs: list[tuple[str, str]]) -> None:
    expected = RequestValidator(token).compute_signature(url, MultiDict(pairs))
    assert twilio_signature(token, url, pairs) == expected


FORM_BYTES = st.one_of(
    st.binary(max_size=200),
    st.lists(st.tuples(st.one_of(NAMES, TEXT), TEXT), max_size=25).map(
        lambda pairs: urlencode(pairs).encode()),
    st.lists(st.sampled_from(["a=b", "", "=", "a", "%", "%2", "%zz", "+", "%2B", "a=%E9",
                              "%C3%A9=1", "b=c=d", "&", "x=%ff%fe", "é=ü"]), max_size=12).map(
        lambda parts: "&".join(parts).encode()),
    st.integers(min_value=MAX_FIELDS - 2, max_value=MAX_FIELDS + 2).map(
        lambda n: "&".join(["a=1"] * n).encode()))


@given(FORM_BYTES)
def test_form_parsed_as_the_standard_library_does(body: bytes) -> None:
    try:
        expected = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                             max_num_fields=MAX_FIELDS)
    except ValueError:
        with pytest.raises(ValueError):
            parse_form(body)
        return
    assert parse_form(body) == expected
