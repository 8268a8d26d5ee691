"""A petition's content as supporters would get it on each channel, before it is saved.

Not a copy of the bot's rules: a newcomer's "Hi", then MORE for every page of the issue,
then INFO, go through the real conversation core, the staff's current wording and the
real renderer, so the preview is what the bot will send, including where it pages the
issue and where SMS would have to cut a reply short."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.conversation import (
    SMS_SEGMENTS,
    Channel,
    Context,
    Inbound,
    State,
    handle,
    issue_pages,
)
from bot.core.gsm import segments, to_gsm7
from bot.core.render import TELEGRAM_LIMIT, WHATSAPP_LIMIT, Message, render
from bot.core.texts import Texts, choices_line
from bot.infra.config import Petition
from bot.shell.petitions import Catalogue


@dataclass(frozen=True)
class Shown:
    """One reply as a channel shows it."""

    what: str                   # "First message", "The issue, page 2 of 3", "INFO"
    text: str                   # as the supporter reads it (Telegram's HTML unescaped)
    buttons: tuple[str, ...]    # Telegram's buttons
    characters: int
    segments: int               # SMS only: what it costs (0 elsewhere)
    cut: bool                   # longer than the channel carries: its end is cut off


def preview(petition: Petition, here: int, texts: Texts, common: Mapping[str, object],
            now: dt.datetime) -> dict[Channel, list[Shown]]:
    """What a newcomer gets on each channel: the greeting, every page of the issue, INFO
    (`here`: the signatures collected here, as the count shows them)."""
    context = Context({petition.slug: Catalogue((petition,)).view(petition, here)},
                      petition.slug)
    shown: dict[Channel, list[Shown]] = {}
    for channel in Channel:
        pages = len(issue_pages(petition.issue, channel))
        asked = [("First message", "Hi")] + [
            (f"The issue (MORE), page {n} of {pages}", "MORE") for n in range(1, pages + 1)
        ] + [("INFO", "INFO")]
        state, replies = State(), []
        for what, said in asked:
            outcome = handle(state, Inbound(channel, said), context, now)
            state = outcome.state
            replies += [_shown(what, Message(texts.render(reply.phrase, common), reply.options),
                               channel) for reply in outcome.replies]
        shown[channel] = replies
    return shown


def _shown(what: str, message: Message, channel: Channel) -> Shown:
    rendered = render(message, channel)
    whole = message.text + choices_line(message.options)
    if channel == Channel.SMS:
        return Shown(what, rendered.text, (), len(rendered.text), segments(rendered.text),
                     segments(to_gsm7(whole)) > SMS_SEGMENTS)
    if channel == Channel.TELEGRAM:
        text = html.unescape(rendered.text)
        return Shown(what, text, tuple(label for label, _ in rendered.buttons), len(text), 0,
                     len(html.escape(message.text, quote=False)) > TELEGRAM_LIMIT)
    return Shown(what, rendered.text, (), len(rendered.text), 0, len(whole) > WHATSAPP_LIMIT)


__all__ = ["Shown", "preview"]
