"""Replies as each channel shows them: GSM-7 text for SMS, numbered choices for SMS and
WhatsApp, HTML with inline buttons for Telegram. Pure: no I/O."""

from __future__ import annotations

import html
from dataclasses import dataclass

from bot.core.conversation import SMS_SEGMENTS, Channel
from bot.core.gsm import to_gsm7, truncate_to_segments
from bot.core.inputs import storable
from bot.core.texts import LABELS, choices_line

WHATSAPP_LIMIT = 1600   # Twilio's body limit
TELEGRAM_LIMIT = 4096   # characters after entity parsing
SHARE_PHONE = "SHARE_PHONE"


@dataclass(frozen=True)
class Message:
    """One reply in words, with the keywords the supporter may answer with."""

    text: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rendered:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (label, callback_data) for Telegram
    contact_button: str = ""  # Telegram: a keyboard button that shares the phone number


def render(message: Message, channel: Channel) -> Rendered:
    """The message as `channel` shows it. Not cached: replies echo names and postcodes,
    which must not outlive an erasure in memory (and a cache measured no gain). Text that no
    channel can carry (NUL, non-characters) is dropped, wherever it came from: a voice or a
    name stored before such text was cleaned on arrival must not break XML."""
    if channel == Channel.TELEGRAM:
        raw = storable(message.text)
        text = html.escape(raw, quote=False)
        while len(text) > TELEGRAM_LIMIT:  # cut the words, never an &amp; in half
            # Escaping only lengthens, so dropping the excess in raw characters never
            # overshoots by more than the entities' extra length; at least 1 per round.
            excess = len(text) - TELEGRAM_LIMIT + (0 if text.endswith("...") else 3)
            raw = raw[: len(raw) - max(excess // 5, 1)].rstrip()
            text = html.escape(raw, quote=False) + "..."
        buttons = tuple((LABELS.get(o, o.title()), o) for o in message.options
                        if o != SHARE_PHONE)
        contact = LABELS[SHARE_PHONE] if SHARE_PHONE in message.options else ""
        return Rendered(text, buttons, contact)
    text = storable(message.text) + choices_line(message.options)
    if channel == Channel.SMS:
        return Rendered(truncate_to_segments(to_gsm7(text), SMS_SEGMENTS))
    if len(text) > WHATSAPP_LIMIT:
        text = text[: WHATSAPP_LIMIT - 3].rsplit(" ", 1)[0] + "..."
    return Rendered(text)

