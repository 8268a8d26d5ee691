"""Tests for SMS encoding: GSM-7 detection, segments and transliteration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import gsm
from bot.core.conversation import Channel
from bot.core.gsm import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    encoding,
    is_gsm7,
    segments,
    septets,
    to_gsm7,
    truncate_to_segments,
    unicode_forcing_characters,
)
from bot.core.inputs import NAME_PUNCTUATION, valid_name
from bot.core.render import Message, render

EMOJI = "😀"


def test_character_sets() -> None:
    # 128 code points in the basic table, minus the ESC that introduces the extension table.
    assert len(GSM7_BASIC) == 127
    assert frozenset("^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert {"\n", "\r", "@", "£", "Δ", "ß", "à", " "} <= GSM7_BASIC
    assert not {"`", "\t", "ç", "€"} & GSM7_BASIC


@pytest.mark.parametrize(
    ("text", "expected_septets", "expected_segments", "expected_encoding"),
    [
        ("", 0, 1, "GSM-7"),
        ("a" * 160, 160, 1, "GSM-7"),
        ("a" * 161, 161, 2, "GSM-7"),
        ("a" * 306, 306, 2, "GSM-7"),
        ("a" * 307, 307, 3, "GSM-7"),
        ("€", 2, 1, "GSM-7"),
        ("€" * 80, 160, 1, "GSM-7"),
        ("€" * 81, 162, 2, "GSM-7"),
        ("Sign for £5? {yes}", 20, 1, "GSM-7"),
    ],
)
def test_gsm7_lengths(
    text: str, expected_septets: int, expected_segments: int, expected_encoding: str
) -> None:
    assert is_gsm7(text)
    assert septets(text) == expected_septets
    assert segments(text) == expected_segments
    assert encoding(text) == expected_encoding


@pytest.mark.parametrize(
    ("text", "expected_segments"),
    [
        (EMOJI, 1),
        ("a" * 68 + EMOJI, 1),  # 70 UTF-16 units: an emoji is a surrogate pair
        ("a" * 69 + EMOJI, 2),
        ("é" * 69 + "ç", 1),
        ("é" * 70 + "ç", 2),
        ("a" * 133 + "ç", 2),
        ("a" * 134 + "ç", 3),
    ],
)
def test_ucs2_segments(text: str, expected_segments: int) -> None:
    assert not is_gsm7(text)
    assert encoding(text) == "UCS-2"
    assert segments(text) == expected_segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("“Sign” it’s ‘now’", "\"Sign\" it's 'now'"),
        ("10–20 — more − less", "10-20 - more - less"),
        ("Wait…", "Wait..."),
        ("a\u00a0b\u2009c\u3000d", "a b c d"),
        ("• one", "- one"),
        ("Zoë Łukasz", "Zoe Lukasz"),
        ("Đorđe œuvre Œ", "Dorde oeuvre OE"),
        ("Ørsted Æsop ßé", "Ørsted Æsop ßé"),  # already GSM-7
        ("e\u0301", "é"),  # decomposed input recombines into GSM-7
        ("ﬁne Ａ", "fine A"),
        ("François", "Francois"),
        (f"Hi {EMOJI}!", "Hi ?!"),
        ("❤️", "?"),  # the variation selector is dropped, not a second "?"
        ("👍🏽", "?"),
        ("中文", "ZhongWen"),  # letters of other scripts spelled in Latin, never "??"
        ("Иван Петров", "Ivan Petrov"),
        ("Ελένη", "Eleni"),
        ("राम शर्मा", "ram srma"),  # vowel signs (marks) spelled too, never "?"
        ("ஸ்ரீ", "sri"),
        ("علي حسن", "'ly hsn"),  # anyascii's ain ("`") mapped into GSM-7
        ("علی مهدی\u200cزاده", "'ly mhdyzdh"),  # the joiner dropped, not a space
        ("ﺍﻟ", "al"),  # a presentation form whose parts spell nothing: spelled whole
        ("Gil·la, ジョン・スミス", "Gil.la, jiyon.sumisu"),
        ("٣", "3"),
        ("tab\there", "tab here"),
        ("zero\u200bwidth", "zerowidth"),
        ("`code`", "'code'"),
    ],
)
def test_to_gsm7(text: str, expected: str) -> None:
    assert to_gsm7(text) == expected
    assert is_gsm7(expected)


def test_transliteration_table_is_gsm7() -> None:
    assert all(is_gsm7(value) for value in gsm._TRANSLITERATIONS.values())


def test_unicode_forcing_characters() -> None:
    assert unicode_forcing_characters(f"Hi “Sam” {EMOJI}") == ["“", "”", EMOJI]
    assert unicode_forcing_characters("“a” “b”") == ["“", "”"]
    assert unicode_forcing_characters("all GSM € [ok]") == []


@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_truncate_leaves_fitting_text_alone(max_segments: int) -> None:
    text = "a" * 160
    assert truncate_to_segments(text, max_segments) == text
    assert truncate_to_segments("", max_segments) == ""


def test_truncate_cuts_at_word_boundary() -> None:
    text = "word " * 100  # 500 septets: four segments
    result = truncate_to_segments(text, 3)
    assert result.endswith("word...")
    assert segments(result) == 3
    assert len(result) <= 153 * 3


def test_truncate_single_segment() -> None:
    text = "Please sign our petition, " * 10
    result = truncate_to_segments(text, 1)
    assert len(result) <= 160
    assert result.endswith("petition...")  # trailing comma is dropped


def test_truncate_without_spaces_cuts_hard() -> None:
    result = truncate_to_segments("x" * 1000, 2)
    assert result == "x" * (306 - 3) + "..."


def test_truncate_counts_extension_characters() -> None:
    result = truncate_to_segments("€" * 200, 1)
    assert result == "€" * 78 + "..."
    assert septets(result) == 159


def test_truncate_ucs2_text() -> None:
    result = truncate_to_segments(EMOJI * 200, 2)
    assert segments(result) <= 2
    assert result.endswith("...")


def test_truncate_rejects_zero_segments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        truncate_to_segments("text", 0)


@given(st.text())
def test_to_gsm7_always_gsm7(text: str) -> None:
    assert is_gsm7(to_gsm7(text))


@given(st.text(), st.integers(min_value=1, max_value=5))
def test_truncate_fits(text: str, max_segments: int) -> None:
    assert segments(truncate_to_segments(to_gsm7(text), 3)) <= 3
    assert segments(truncate_to_segments(text, max_segments)) <= max_segments


@given(st.text(alphabet=st.sampled_from("ab €{\n"), min_size=460, max_size=1200))
def test_truncate_long_gsm7_text(text: str) -> None:
    result = truncate_to_segments(text, 3)
    assert segments(result) <= 3
    assert result.endswith("...")
    assert text.startswith(result[:-3])


@given(st.text())
def test_forcing_characters_are_exactly_the_non_gsm7_ones(text: str) -> None:
    forcing = unicode_forcing_characters(text)
    assert len(forcing) == len(set(forcing))
    assert is_gsm7(text) == (not forcing)
    assert all(not is_gsm7(char) for char in forcing)


GSM7_HEAVY = st.text(alphabet=st.one_of(st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)),
                                        st.characters()))


@given(GSM7_HEAVY)
def test_counts_agree_with_the_character_tables(text: str) -> None:
    # The helpers scan with regular expressions; these are the definitions they implement.
    gsm7 = all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)
    assert is_gsm7(text) == gsm7
    if gsm7:
        assert septets(text) == sum(2 if char in GSM7_EXTENSION else 1 for char in text)
        assert encoding(text) == "GSM-7"
    else:
        assert encoding(text) == "UCS-2"
    if gsm7:
        length, single, part = sum(2 if c in GSM7_EXTENSION else 1 for c in text), 160, 153
    else:
        length, single, part = sum(2 if ord(c) > 0xFFFF else 1 for c in text), 70, 67
    assert segments(text) == (1 if length <= single else -(-length // part))


# A name in any script: letters and marks of every script, name punctuation, the joiners.
NAME_TEXT = st.text(alphabet=st.one_of(
    st.characters(categories=["L", "M"]), st.characters(categories=["L"], max_codepoint=0x24F),
    st.sampled_from(sorted(NAME_PUNCTUATION | {"\u200c", "\u200d"}))), min_size=2)


@given(NAME_TEXT)
def test_any_name_accepted_comes_back_by_sms_without_a_question_mark(raw: str) -> None:
    """The SMS review shows the name a signer gave in GSM-7 they can check: every letter
    spelled or dropped, never a "?" the name did not have (names cannot have one)."""
    name = valid_name(raw)
    if name is None:
        return
    said = render(Message(f"Name: {name}"), Channel.SMS).text
    assert said.startswith("Name: ") and is_gsm7(said)
    assert "?" not in said, (name, said)
