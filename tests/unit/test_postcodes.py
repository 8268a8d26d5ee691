"""Tests for UK postcode validation and nation derivation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.postcodes import (
    Nation,
    nation_of,
    normalise_postcode,
    postcode_area,
    postcode_district,
)

# raw input, canonical form, area, district, nation
VALID = [
    ("SW1A 1AA", "SW1A 1AA", "SW", "SW1A", Nation.ENGLAND),
    ("sw1a1aa", "SW1A 1AA", "SW", "SW1A", Nation.ENGLAND),
    (" SW1A-1AA ", "SW1A 1AA", "SW", "SW1A", Nation.ENGLAND),
    ("EC1A 1BB", "EC1A 1BB", "EC", "EC1A", Nation.ENGLAND),
    ("W1A 0AX", "W1A 0AX", "W", "W1A", Nation.ENGLAND),
    ("M1 1AE", "M1 1AE", "M", "M1", Nation.ENGLAND),
    ("B33 8TH", "B33 8TH", "B", "B33", Nation.ENGLAND),
    ("CR2 6XH", "CR2 6XH", "CR", "CR2", Nation.ENGLAND),
    ("DN55 1PT", "DN55 1PT", "DN", "DN55", Nation.ENGLAND),
    ("G1 1AA", "G1 1AA", "G", "G1", Nation.SCOTLAND),
    ("EH1 1YZ", "EH1 1YZ", "EH", "EH1", Nation.SCOTLAND),
    ("CF10 1EP", "CF10 1EP", "CF", "CF10", Nation.WALES),
    ("BT1 5GS", "BT1 5GS", "BT", "BT1", Nation.NORTHERN_IRELAND),
    ("SY23 1AA", "SY23 1AA", "SY", "SY23", Nation.WALES),
    ("SY1 1AA", "SY1 1AA", "SY", "SY1", Nation.ENGLAND),
    ("CH7 1AA", "CH7 1AA", "CH", "CH7", Nation.WALES),
    ("CH1 1AA", "CH1 1AA", "CH", "CH1", Nation.ENGLAND),
    ("TD15 1AA", "TD15 1AA", "TD", "TD15", Nation.ENGLAND),
    ("TD1 1AA", "TD1 1AA", "TD", "TD1", Nation.SCOTLAND),
    ("JE2 3AB", "JE2 3AB", "JE", "JE2", Nation.CROWN_DEPENDENCIES),
    ("IM1 1AA", "IM1 1AA", "IM", "IM1", Nation.CROWN_DEPENDENCIES),
    ("BFPO 1234", "BFPO 1234", "BFPO", "BFPO", Nation.BFPO),
    ("BFPO 1", "BFPO 1", "BFPO", "BFPO", Nation.BFPO),
    ("BFPO C/O 57", "BFPO C/O 57", "BFPO", "BFPO", Nation.BFPO),
    ("GIR 0AA", "GIR 0AA", "GIR", "GIR", Nation.ENGLAND),
    ("gir0aa", "GIR 0AA", "GIR", "GIR", Nation.ENGLAND),
]

INVALID = [
    "",
    "N1",
    "90210",
    "SW1A 1A",
    "SW1A 1AAA",
    "🏴SW1A",
    "SW1A 1AA" * 625,  # 5000 characters
    "ZZZZ 999",
    "SW1A 1CI",  # C and I never appear in the inward letters
    "SW1A 1AA" + " " * 9,  # valid once sanitised, but 17 raw characters
    "BFPO 12345",
    "   ",
]


@pytest.mark.parametrize(("raw", "canonical", "area", "district", "nation"), VALID)
def test_valid_postcodes(
    raw: str, canonical: str, area: str, district: str, nation: Nation
) -> None:
    assert normalise_postcode(raw) == canonical
    assert postcode_area(canonical) == area
    assert postcode_district(canonical) == district
    assert nation_of(canonical) == nation


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_postcodes(raw: str) -> None:
    assert normalise_postcode(raw) is None


@pytest.mark.parametrize(
    ("postcode", "nation"),
    [
        ("TD12 4AA", Nation.SCOTLAND),
        ("TD9 7AA", Nation.SCOTLAND),
        ("SY14 1AA", Nation.ENGLAND),
        ("SY15 1AA", Nation.WALES),
        ("SY25 1AA", Nation.WALES),
        ("CH4 1AA", Nation.ENGLAND),
        ("CH5 1AA", Nation.WALES),
        ("CH8 1AA", Nation.WALES),
        ("CH41 1AA", Nation.ENGLAND),
        ("GY1 1AA", Nation.CROWN_DEPENDENCIES),
        ("ZE1 0AA", Nation.SCOTLAND),
        ("LL11 1AA", Nation.WALES),
        ("NP20 1AA", Nation.WALES),
        ("SA1 1AA", Nation.WALES),
        ("LD1 5AA", Nation.WALES),
        ("AB10 1AA", Nation.SCOTLAND),
        ("GL1 1AA", Nation.ENGLAND),  # starts with G but is Gloucester
    ],
)
def test_border_and_area_rules(postcode: str, nation: Nation) -> None:
    assert nation_of(postcode) == nation


def test_nation_values_are_lowercase() -> None:
    assert Nation.NORTHERN_IRELAND.value == "northern_ireland"
    assert f"{Nation.OUTSIDE_UK}" == "outside_uk"
    assert all(member.value == member.value.lower() for member in Nation)


@pytest.mark.parametrize("func", [postcode_area, postcode_district, nation_of])
def test_helpers_reject_invalid_postcodes(func: Callable[[str], object]) -> None:
    with pytest.raises(ValueError, match="not a valid UK postcode"):
        func("90210")


@given(st.text())
def test_normalise_never_raises_and_is_idempotent(raw: str) -> None:
    canonical = normalise_postcode(raw)
    if canonical is not None:
        assert normalise_postcode(canonical) == canonical


STANDARD_POSTCODE = st.from_regex(
    r"[A-Z]{1,2}[0-9][0-9A-Z]?[ -]?[0-9][ABD-HJLNP-UW-Z]{2}", fullmatch=True
)
BFPO_POSTCODE = st.from_regex(r"BFPO ?(C/O )?[0-9]{1,4}", fullmatch=True)


@given(st.one_of(STANDARD_POSTCODE, BFPO_POSTCODE), st.booleans())
def test_generated_postcodes_are_valid(raw: str, lower: bool) -> None:
    canonical = normalise_postcode(raw.lower() if lower else raw)
    assert canonical is not None
    assert normalise_postcode(canonical) == canonical
    assert canonical.replace(" ", "").replace("/", "") == raw.replace(" ", "").replace(
        "-", ""
    ).replace("/", "")
    assert nation_of(canonical) is not Nation.OUTSIDE_UK
    assert canonical.startswith(postcode_district(canonical))
    assert postcode_district(canonical).startswith(postcode_area(canonical))
