"""The TwiML answer is valid XML whatever the replies say, and says exactly what they say
(less what no XML document can hold: controls, lone surrogates, U+FFFE, U+FFFF...)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from bot.channels.twilio.inbound import answer, twiml
from bot.core.conversation import Channel
from bot.core.inputs import storable
from bot.core.render import Message

STRANGE = st.sampled_from(["\x00", "\x01", "\x0b", "\x1b", "\x7f", "\ud800", "\udfff",
                           "\ufffe", "\uffff", "\U0010ffff", "\ufdd0", "]]>", "<", "&amp;",
                           "\r\n", "\r", "\t", "'", '"'])
TEXT = st.lists(st.one_of(st.characters(), STRANGE), max_size=60).map("".join)


def messages(xml: str) -> list[str]:
    root = ET.fromstring(xml.encode())  # well-formed, or this raises
    assert root.tag == "Response" and all(child.tag == "Message" for child in root)
    return [child.text or "" for child in root]


@given(st.lists(TEXT, max_size=4))
def test_twiml_is_valid_xml_and_says_what_the_replies_say(texts: list[str]) -> None:
    # An XML parser reads a line break written as CR LF or CR as LF.
    said = [storable(text).replace("\r\n", "\n").replace("\r", "\n") for text in texts]
    assert messages(twiml(texts)) == said


def test_no_replies_is_an_empty_response() -> None:
    assert messages(twiml([])) == []


def test_the_answer_shows_replies_as_the_channel_does() -> None:
    reply = Message("Sign the petition?", ("YES", "NO"))
    assert messages(answer([reply], Channel.SMS)) == ["Sign the petition?\nReply 1 YES or 2 NO"]
