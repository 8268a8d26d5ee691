"""Phone numbers in one form, E.164, whatever way a provider or a person wrote them."""

from __future__ import annotations

import phonenumbers


# Not cached (about 17 us a number): a cache would keep the numbers of people who have since
# asked to be erased, for as long as the process lives.
def normalise_phone(raw: str, region: str = "GB") -> str | None:
    """E.164 for a possible phone number (national numbers read as UK), else None."""
    if not raw or len(raw) > 32:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def mask(phone: str) -> str:
    """A number safe for logs and staff screens: +4477******23."""
    return phone[:5] + "*" * max(len(phone) - 7, 0) + phone[-2:] if len(phone) > 7 else "***"
