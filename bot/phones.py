"""Phone numbers in one form, E.164, whatever way a provider or a person wrote them."""

from __future__ import annotations

import functools

import phonenumbers


# Every message from Twilio names its sender, and parsing a number costs more than the rest
# of the webhook's checks together; the same few numbers recur within a conversation, so the
# latest answers are remembered (in this process's memory only, never written anywhere).
@functools.lru_cache(maxsize=1024)
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
