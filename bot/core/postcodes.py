"""UK postcode validation, canonical formatting and nation derivation."""

# Validation follows the UK Parliament petitions site (alphagov/e-petitions):
# strip everything but A-Z/0-9, upper-case, then match a standard postcode,
# a BFPO number or the Girobank GIR 0AA code.
#
# Nation rules, by postcode area (with district-level exceptions):
#   Northern Ireland: BT.  Crown dependencies: JE, GY, IM.  BFPO: BFPO.
#   Scotland: AB DD DG EH FK G HS IV KA KW KY ML PA PH ZE, and TD except TD15.
#   Wales: CF LD LL NP SA, SY15-SY25 and CH5-CH8.
#   Everything else (including GIR 0AA, SY1-SY14, other CH, TD15): England.
# Some districts straddle a border (e.g. CH4, LL, NP, TD9, TD12); those are
# approximated at district level, so a handful of addresses land on the wrong side.

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

__all__ = [
    "Nation",
    "nation_of",
    "normalise_postcode",
    "postcode_area",
    "postcode_district",
]

# Anything longer is not a postcode someone typed; refuse before doing any work on it.
MAX_RAW_LENGTH: Final = 16

_NOT_ALNUM: Final = re.compile(r"[^A-Za-z0-9]")
_STANDARD: Final = re.compile(r"[A-Z]{1,2}[0-9][0-9A-Z]?[0-9][ABD-HJLNP-UW-Z]{2}", re.IGNORECASE)
# e-petitions allows "BFPO C/O 123"; sanitising has already turned the "C/O" into "CO".
_BFPO: Final = re.compile(r"BFPO?(?P<care_of>CO)?(?P<number>[0-9]{1,4})", re.IGNORECASE)
_GIROBANK: Final = "GIR0AA"
_LEADING_LETTERS: Final = re.compile(r"[A-Z]+")
_DISTRICT_NUMBER: Final = re.compile(r"[A-Z]+(?P<number>[0-9]+)")


class Nation(StrEnum):
    """Where a supporter lives, as used for petition reporting."""

    ENGLAND = "england"
    SCOTLAND = "scotland"
    WALES = "wales"
    NORTHERN_IRELAND = "northern_ireland"
    CROWN_DEPENDENCIES = "crown_dependencies"  # JE, GY, IM
    BFPO = "bfpo"  # British Forces Post Office
    OUTSIDE_UK = "outside_uk"  # set by callers for supporters abroad; never from nation_of


_SCOTTISH_AREAS: Final = frozenset(
    {"AB", "DD", "DG", "EH", "FK", "G", "HS", "IV", "KA", "KW", "KY", "ML", "PA", "PH", "TD", "ZE"}
)
_WELSH_AREAS: Final = frozenset({"CF", "LD", "LL", "NP", "SA"})
_CROWN_DEPENDENCY_AREAS: Final = frozenset({"JE", "GY", "IM"})

# Mixed areas: the districts listed here belong to the *other* nation from the area default.
_ENGLISH_TD_DISTRICTS: Final = frozenset({15})  # Berwick-upon-Tweed
_WELSH_SY_DISTRICTS: Final = frozenset(range(15, 26))  # SY1-SY14 are Shropshire
_WELSH_CH_DISTRICTS: Final = frozenset({5, 6, 7, 8})  # Flintshire; the rest is Cheshire/Wirral


def normalise_postcode(raw: str) -> str | None:
    """Return the canonical form ("SW1A 1AA", "BFPO 1234", "GIR 0AA"), or None if invalid."""
    if not raw or len(raw) > MAX_RAW_LENGTH:
        return None
    sanitised = _NOT_ALNUM.sub("", raw).upper()
    if sanitised == _GIROBANK:
        return "GIR 0AA"
    if _STANDARD.fullmatch(sanitised):
        # The inward code is always exactly three characters, so the split is unambiguous.
        return f"{sanitised[:-3]} {sanitised[-3:]}"
    bfpo = _BFPO.fullmatch(sanitised)
    if bfpo:
        care_of = "C/O " if bfpo["care_of"] else ""
        return f"BFPO {care_of}{bfpo['number']}"
    return None


def _canonical(postcode: str) -> str:
    """Normalise a postcode, raising ValueError when it is not valid."""
    canonical = normalise_postcode(postcode)
    if canonical is None:
        raise ValueError(f"not a valid UK postcode: {postcode!r}")
    return canonical


def postcode_district(postcode: str) -> str:
    """Return the outward code of a postcode: "SW1A" for "SW1A 1AA", "BFPO" for BFPO."""
    return _canonical(postcode).split(" ", 1)[0]


def postcode_area(postcode: str) -> str:
    """Return the leading letters of a postcode: "SW", "G", "BFPO" or "GIR"."""
    canonical = _canonical(postcode)
    # Every canonical form starts with a letter, so the fallback is never used.
    match = _LEADING_LETTERS.match(canonical)
    return match.group() if match else canonical


def _district_number(district: str) -> int | None:
    """Return the numeric part of a standard district ("SY23" -> 23, "EC1A" -> 1)."""
    match = _DISTRICT_NUMBER.match(district)
    return int(match["number"]) if match else None


def nation_of(postcode: str) -> Nation:
    """Return the nation a postcode belongs to (never Nation.OUTSIDE_UK)."""
    area = postcode_area(postcode)
    number = _district_number(postcode_district(postcode))
    if area == "BFPO":
        return Nation.BFPO
    if area == "BT":
        return Nation.NORTHERN_IRELAND
    if area in _CROWN_DEPENDENCY_AREAS:
        return Nation.CROWN_DEPENDENCIES
    if area == "TD":
        return Nation.ENGLAND if number in _ENGLISH_TD_DISTRICTS else Nation.SCOTLAND
    if area in _SCOTTISH_AREAS:
        return Nation.SCOTLAND
    if area == "SY":
        return Nation.WALES if number in _WELSH_SY_DISTRICTS else Nation.ENGLAND
    if area == "CH":
        return Nation.WALES if number in _WELSH_CH_DISTRICTS else Nation.ENGLAND
    if area in _WELSH_AREAS:
        return Nation.WALES
    # GIR 0AA (Girobank, Bootle) falls through here too.
    return Nation.ENGLAND
