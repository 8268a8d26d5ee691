"""What supporters type, cleaned and checked: names, countries, voices, keywords. Pure."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME = 80
MAX_COUNTRY = 56
MAX_VOICE = 300
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
                        "OPTOUT"})
START_WORDS = frozenset({"START", "UNSTOP"})
RESERVED = frozenset({"YES", "NO", "SIGN", "MORE", "INFO", "HELP", "EDIT", "NONE", "STATUS",
                      "VOICE", "DELETE", "RESTART", "UPDATES", "PERSON"}) | STOP_WORDS | START_WORDS
YES_WORDS = frozenset({"YES", "Y", "YEP", "YEAH", "OK", "AGREE", "I AGREE"})
NO_WORDS = frozenset({"NO", "N", "NOPE"})
# A hello ("hi", "hello again", "good morning") is no message for a person, nor a name.
GREETINGS = frozenset({"HI", "HELLO", "HELO", "HEY", "HIYA", "YO", "GOOD", "MORNING",
                       "AFTERNOON", "EVENING"})
THANKS = frozenset({"THANKS", "THANK", "THANKYOU", "THX", "TA", "CHEERS"})
# A name made only of these ("yes please", "sign me up", "ok thanks") is an answer, not a name.
NOT_NAMES = RESERVED | YES_WORDS | NO_WORDS | THANKS | {
    "PLEASE", "PLS", "YOU", "ME", "UP", "SURE", "OKAY", "FINE", "GO", "AHEAD", "I", "DO",
    "WANT", "TO", "HI", "HELLO", "HEY", "NAME", "MY"}
# The middle dots join a name's parts in Catalan (Gil·la) and in Chinese and Japanese
# spellings of foreign names (穆罕默德·阿里); the geresh marks a Hebrew letter's other sound.
NAME_PUNCTUATION = frozenset(" '-.,’\u00b7\u30fb\u05f3")
COUNTRY_PUNCTUATION = frozenset(" '-.,()&’")


# What no database or XML document can hold, whoever sent it: C0 controls but tab, newline
# and carriage return (PostgreSQL refuses NUL; XML 1.0 refuses the rest), DEL, lone
# surrogates (valid JSON can carry one: "\ud800"), and the non-characters (U+FDD0..U+FDEF
# and the last two code points of every plane, U+FFFE and U+FFFF among them).
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufdd0-\ufdef"
                         + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}"
                                   for plane in range(17)) + "]")
# Format characters a script needs between two of its letters: ZWNJ and ZWJ (Persian,
# the Indic scripts). `clean` keeps them there, and a name or a country keeps them: they
# are part of its spelling (مهدی‌زاده). Any other format character (zero-width space, BOM,
# word joiner...) is dropped, never turned into a space.
_JOINERS = frozenset("\u200c\u200d")


def storable(text: str) -> str:
    """`text` without what a database or XML cannot hold: done to everything a stranger
    sends, before anything is stored or rendered."""
    return _UNSTORABLE.sub("", text)


def clean(text: str, limit: int) -> str:
    """NFC, no control or format characters, single spaces, at most `limit` characters."""
    text = unicodedata.normalize("NFC", text[: limit * 4])
    kept = []
    for i, c in enumerate(text):
        category = unicodedata.category(c)
        if category == "Cf":
            if c in _JOINERS and 0 < i < len(text) - 1 and _script_letter(text[i - 1]) and (
                    _script_letter(text[i + 1])):
                kept.append(c)
        elif category in ("Cc", "Zl", "Zp") or c.isspace():
            kept.append(" ")
        else:
            kept.append(c)
    return " ".join("".join(kept).split())[:limit]


def _script_letter(c: str) -> bool:
    """A letter (or mark) beyond Latin, where a joiner can change how a word is written."""
    return ord(c) > 0x24F and unicodedata.category(c)[0] in "LM"


def _is_keyword(text: str) -> bool:
    """A keyword or a yes/no answer ("Yes.", "ok"), which is never a name or a country."""
    return text.upper().strip(" .!,?") in RESERVED | YES_WORDS | NO_WORDS


def valid_name(raw: str) -> str | None:
    """A person's full name, or None: letters and name punctuation, no formula prefix."""
    if len(raw) > MAX_NAME * 4:
        return None
    name = clean(raw, limit=MAX_NAME + 1)
    if not 1 <= len(name) <= MAX_NAME or name[0] in "=+-@" or _is_keyword(name):
        return None
    if not all(c.isalpha() or c in NAME_PUNCTUATION or c in _JOINERS
               or unicodedata.category(c).startswith("M") for c in name):
        return None
    words = _words(name)
    if set(words) <= NOT_NAMES or words[0] in RESERVED | YES_WORDS | NO_WORDS:
        return None  # "yes that is fine", "sign me up": an answer, not a name
    return name if sum(c.isalpha() for c in name) >= 2 else None


def valid_country(raw: str) -> str | None:
    """A country name as typed, or None."""
    if len(raw) > MAX_COUNTRY * 4:
        return None
    country = clean(raw, limit=MAX_COUNTRY + 1)
    if not 2 <= len(country) <= MAX_COUNTRY or country[0] in "=+-@" or _is_keyword(country):
        return None
    if not all(c.isalpha() or c in COUNTRY_PUNCTUATION or c in _JOINERS
               or unicodedata.category(c).startswith("M") for c in country):
        return None
    return country if sum(c.isalpha() for c in country) >= 2 else None


def valid_voice(raw: str) -> str | None:
    """A short "why I signed", or None: a few words, no formula prefix, bounded."""
    if len(raw) > MAX_VOICE * 4:
        return None
    said = clean(raw, limit=MAX_VOICE + 1)
    if not 3 <= len(said) <= MAX_VOICE or said[0] in "=+-@" or _is_keyword(said):
        return None
    return said if sum(c.isalpha() for c in said) >= 3 else None


def for_a_person(text: str, *, questions_only: bool = False, anything: bool = False) -> bool:
    """Whether words are meant for a person rather than the bot: a question, thanks, or
    three words or more (`questions_only`: a question, where a name or a postcode is asked
    and a long answer is more likely a slip); with `anything` (after signing), also any
    other word that is no keyword. A greeting alone is not, nor text without letters."""
    words = _words(text)
    if sum(c.isalpha() for c in text) < 2 or _greeting(text, words):
        return False
    if "?" in text:
        return True
    if questions_only:
        return False
    if len(words) >= 3 or THANKS & set(words):
        return True
    return anything and bool(words) and words[0] not in RESERVED | YES_WORDS | NO_WORDS


SIGN_WORDS = frozenset({"SIGN", "SIGNING", "SIGNED"})
NEGATIONS = frozenset({"NOT", "DON'T", "DONT", "NO", "NEVER", "WON'T", "CAN'T", "CANNOT"})


def wants(text: str) -> str:
    """The keyword a short message plainly means in other words: "I want to sign", "sign me
    up please" mean SIGN; "yes please", "yes I do" mean YES. Nothing for a question, a
    negation or a longer message (which is for a person)."""
    words = _words(text)
    if not words or "?" in text or len(words) > 6 or NEGATIONS & set(words):
        return ""
    if words[0] in YES_WORDS or text.upper().strip(" .!") in YES_WORDS:
        return "YES"
    return "SIGN" if SIGN_WORDS & set(words) else ""


def _greeting(text: str, words: list[str]) -> bool:
    """A hello: one word ("hello?"), or a few that ask nothing ("hello again")."""
    return bool(words) and words[0] in GREETINGS and (
        len(words) == 1 or (len(words) <= 3 and "?" not in text))


def _words(text: str) -> list[str]:
    """The words, upper case, without punctuation."""
    return re.sub(r"[^\w\s']", " ", text.upper()).split()


def suggests_distress(text: str, words: tuple[str, ...]) -> bool:
    """Whether the text contains one of the configured distress phrases (whole words)."""
    lowered = " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())
    return any(re.search(rf"\b{re.escape(w.lower())}\b", lowered) for w in words)
