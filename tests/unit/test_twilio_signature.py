"""Our X-Twilio-Signature is exactly what twilio's RequestValidator computes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from webhooks.twilio import twilio_signature

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
