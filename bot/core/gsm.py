"""SMS encoding helpers: GSM-7 detection, segment counting and transliteration."""

# A single character outside GSM 03.38 switches the whole SMS to UCS-2, which cuts a
# segment from 160 to 70 characters and so can more than double the cost of a send.
# These helpers let us measure that and rewrite text into GSM-7 before sending.

from __future__ import annotations

import math
import re
import unicodedata
from typing import Final

from anyascii import anyascii

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "encoding",
    "is_gsm7",
    "segments",
    "septets",
    "to_gsm7",
    "truncate_to_segments",
    "unicode_forcing_characters",
]

# GSM 03.38 basic character set (the ESC code point is deliberately absent).
GSM7_BASIC: Final[frozenset[str]] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table characters: each is sent as ESC + char, so costs two septets.
GSM7_EXTENSION: Final[frozenset[str]] = frozenset("^{}\\[~]|€")
_GSM7_ALL: Final = GSM7_BASIC | GSM7_EXTENSION
# The same sets as regular expressions: the checks below run on every reply, and a regular
# expression scans a string in C where a generator would visit each character in Python.
_NOT_GSM7: Final = re.compile("[^" + re.escape("".join(sorted(_GSM7_ALL))) + "]")
_EXTENSION: Final = re.compile("[" + re.escape("".join(sorted(GSM7_EXTENSION))) + "]")
_ASTRAL: Final = re.compile("[\U00010000-\U0010FFFF]")

_GSM7_SINGLE: Final = 160
_GSM7_PART: Final = 153  # concatenated parts lose 7 septets to the UDH
_UCS2_SINGLE: Final = 70
_UCS2_PART: Final = 67
_ELLIPSIS: Final = "..."  # three septets or three UTF-16 units in either encoding

# Characters NFKD cannot rescue: typographic punctuation and letters without decompositions.
_TRANSLITERATIONS: Final[dict[str, str]] = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",  # curly single quotes
    "\u2032": "'", "\u2039": "'", "\u203a": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',  # curly double quotes
    "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-",  # hyphens, en dash
    "\u2014": "-", "\u2015": "-", "\u2212": "-", "\u2022": "-",  # em dash, minus, bullet
    "\u2026": "...", "\u2044": "/", "\u00d7": "x", "\u00a9": "(c)", "\u00ae": "(R)",
    "\t": " ", "\x0b": " ", "\x0c": " ",  # tabs and feeds read as spaces
    "\u2028": "\n", "\u2029": "\n", "\x85": "\n",  # Unicode line/paragraph breaks
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "ħ": "h", "Ħ": "H",
    "œ": "oe", "Œ": "OE", "þ": "th", "Þ": "Th", "ı": "i",
    "\u00b7": ".", "\u30fb": ".", "\u05f3": "'",  # in names: middle dots, Hebrew geresh
}  # fmt: skip
# Invisible characters (ZWJ, controls) are dropped rather than turned into "?", and so are
# the marks no letter is spelled with (accents, variation selectors): an emoji sequence
# collapses to a single "?".
_INVISIBLE_CATEGORIES: Final = frozenset({"Cf", "Cc"})
_SKIN_TONE_MODIFIERS: Final = range(0x1F3FB, 0x1F400)


def is_gsm7(text: str) -> bool:
    """Return True when every character can be sent in GSM-7 (basic or extension)."""
    return _NOT_GSM7.search(text) is None


def septets(text: str) -> int:
    """Return the GSM-7 length of text; extension characters count twice."""
    return len(text) + len(_EXTENSION.findall(text))


def _utf16_units(text: str) -> int:
    """Return the UTF-16 length of text (astral characters need a surrogate pair)."""
    return len(text) + len(_ASTRAL.findall(text))


def segments(text: str) -> int:
    """Return how many SMS segments text needs (empty text is one segment)."""
    if is_gsm7(text):
        length, single, part = septets(text), _GSM7_SINGLE, _GSM7_PART
    else:
        length, single, part = _utf16_units(text), _UCS2_SINGLE, _UCS2_PART
    return 1 if length <= single else math.ceil(length / part)


def encoding(text: str) -> str:
    """Return "GSM-7" or "UCS-2", whichever the text would be sent in."""
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def unicode_forcing_characters(text: str) -> list[str]:
    """Return the distinct non-GSM-7 characters of text, in order of first appearance."""
    return list(dict.fromkeys(char for char in text if char not in _GSM7_ALL))


def _transliterate_char(char: str, *, decompose: bool = True) -> str:
    """Return a GSM-7 replacement for one character ("" to drop it, "?" if hopeless)."""
    if char in _GSM7_ALL:
        return char
    mapped = _TRANSLITERATIONS.get(char)
    if mapped is not None:
        return mapped
    category = unicodedata.category(char)
    if category == "Zs":
        return " "
    if category in _INVISIBLE_CATEGORIES or ord(char) in _SKIN_TONE_MODIFIERS:
        return ""
    # A letter, vowel sign or digit of another script, as a reader of Latin would spell it
    # (Иван -> Ivan, राम -> ram, ジ -> ji, ٣ -> 3): a name comes back recognisable, never
    # with a "?" in it. What anyascii cannot spell is decomposed (NFKD) or else dropped
    # (an accent, Arabic alef).
    letter = category[0] in "LMN"
    if letter and (spelled := _spelled(char)):
        return spelled
    if decompose:
        # NFKD splits accents off and unfolds compatibility forms (ﬁ -> fi, full-width
        # A -> A); the accents are then dropped.
        decomposed = unicodedata.normalize("NFKD", char)
        if decomposed != char:
            parts = "".join(_transliterate_char(part, decompose=False) for part in decomposed)
            return parts or ("" if letter else "?")
    return "" if letter else "?"


def _spelled(char: str) -> str:
    """anyascii's spelling of `char`, in GSM-7: the little it spells outside GSM-7 (the
    backtick of Arabic ain) mapped into it, and its "?" (a Carian or Tangut sound no one
    knows) dropped, so a "?" in a reply is one that was written."""
    return "".join(c if c in _GSM7_ALL else _TRANSLITERATIONS.get(c, "")
                   for c in anyascii(char) if c != "?")


def to_gsm7(text: str) -> str:
    """Rewrite text so it can be sent as GSM-7, replacing what cannot be mapped with "?"."""
    # NFC first so decomposed input ("e" + combining acute) recombines into GSM-7 "é".
    composed = unicodedata.normalize("NFC", text)
    if is_gsm7(composed):
        return composed
    return "".join(_transliterate_char(char) for char in composed)


def _cost(char: str, gsm: bool) -> int:
    """Return what one character costs in septets (GSM-7) or UTF-16 units (UCS-2)."""
    if gsm:
        return 2 if char in GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def truncate_to_segments(text: str, max_segments: int = 3) -> str:
    """Shorten text at a word boundary, ending in "...", so it fits in max_segments."""
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    if segments(text) <= max_segments:
        return text
    gsm = is_gsm7(text)
    single, part = (_GSM7_SINGLE, _GSM7_PART) if gsm else (_UCS2_SINGLE, _UCS2_PART)
    budget = (single if max_segments == 1 else part * max_segments) - len(_ELLIPSIS)
    # Text that does not fit is longer than the budget, so the loop always stops early.
    used = end = 0
    while used + _cost(text[end], gsm) <= budget:
        used += _cost(text[end], gsm)
        end += 1
    cut = text[:end]
    if not text[end].isspace():
        # Back up to the last space, unless that would throw away more than half the text.
        boundary = next((i for i in range(end - 1, -1, -1) if cut[i].isspace()), -1)
        if boundary > end // 2:
            cut = cut[:boundary]
    # Avoid endings like "word,..." or "word -...".
    return cut.rstrip().rstrip(",;:-").rstrip() + _ELLIPSIS
