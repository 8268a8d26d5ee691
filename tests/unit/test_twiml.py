"""Our TwiML is exactly what twilio's MessagingResponse writes for plain messages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from webhooks.twilio import twiml

TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=200)


@given(st.lists(TEXT, max_size=4))
def test_twiml_matches_the_library(texts: list[str]) -> None:
    expected = MessagingResponse()
    for text in texts:
        expected.message(text)
    assert twiml(texts).get_data(as_text=True) == str(expected)


def test_twiml_is_served_as_xml() -> None:
    assert twiml(["Hi"]).mimetype == "text/xml"
