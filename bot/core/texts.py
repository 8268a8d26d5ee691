"""Every sentence the bot says, in one place. The operator may reword any of them in
config.toml, and admins in the console (Bot texts), which wins from the next message on.

Rules: plain GSM-7 characters only (they go by SMS); `{field}` placeholders are filled
from the reply's parameters; an override may use only the fields its default uses
(bot.infra.config.text_problems checks both kinds of rewording alike).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Phrase:
    """A text key with its parameters; a parameter may itself be a Phrase or a tuple of them."""

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def text_keys(self) -> tuple[str, ...]:
        """The texts this phrase says: its own key, or those of the phrases it joins."""
        if self.key == LINES:
            return tuple(key for line in self.params["lines"] for key in line.text_keys())
        return (self.key,)


# Not a text but several, one per line, in one reply: e.g. "Nothing has been deleted." and
# the question of the step the supporter is back at. Each line is reworded on its own.
LINES = "lines"


def lines(*phrases: Phrase | None) -> Phrase:
    """One reply saying `phrases` (those not None), one after the other."""
    said = tuple(p for p in phrases if p is not None)
    return said[0] if len(said) == 1 else Phrase(LINES, {"lines": said})


def choices_line(options: tuple[str, ...]) -> str:
    """How SMS and WhatsApp offer a step's choices: by number, in the order offered."""
    if len(options) < 2:
        return ""
    numbered = [f"{i} {option}" for i, option in enumerate(options, start=1)]
    return "\nReply " + ", ".join(numbered[:-1]) + " or " + numbered[-1]


DEFAULTS: dict[str, str] = {
    "greeting": "Hello from {organiser}.\n{title}\n{summary}\n{count} people have signed.",
    "greeting_signed": "Welcome back. You signed \"{title}\" (signature no. {number} here). "
                       "{count} people have signed so far.",
    "unknown_petition": "Sorry, there is no petition with that code.",
    "page": "{page_text}\n(Page {page} of {pages})",
    "page_last": "{page_text}\n(Page {page} of {pages}, the end)",
    "page_whole": "{page_text}",
    "info": "{title}\nTo: {decision_makers}\nStarted by {organiser} on {created}.\n"
            "Signatures: {count_breakdown}.",
    "help": "{short_name} petition bot. Reply SIGN to sign, MORE to read the issue, INFO for "
            "details, STATUS to see what we hold about you, DELETE to erase it, PERSON to "
            "write to someone at the charity, RESTART to start again, STOP to stop all "
            "messages. Questions: {contact}",
    "help_signed": "{short_name} petition bot. Thank you for signing. Reply VOICE to tell us "
                   "why you signed, MORE to read the issue, INFO for details, STATUS to see "
                   "what we hold about you, DELETE to erase it, PERSON to write to someone at "
                   "the charity, STOP to stop all messages. Questions: {contact}",
    "consent_declined": "No problem: nothing has been stored.",
    "ask_name": "Thank you. What is your full name?",
    "name_invalid": "Please send your full name, e.g. Sam Jones: letters only, up to "
                    "{max_length} characters.",
    "ask_postcode": "Thanks, {name}. What is your UK postcode? If you live outside the UK, "
                    "reply NONE.",
    "postcode_invalid": "Sorry, that does not look like a full UK postcode (like SW1A 1AA). "
                        "Please try again, or reply NONE if you live outside the UK.",
    "ask_country": "Which country do you live in?",
    "country_invalid": "Please send the name of the country you live in.",
    "review": "Please check what we will record:\nName: {name}\n{place}\n"
              "Shall we sign the petition with these details?",
    "review_cancelled": "OK, you have not signed and we have not kept your details.",
    "signed": "Thank you, {name}, you have signed! Your signature is number {number} here, "
              "and {count} people have signed in all. Please share the petition: {share_link}",
    "updates_yes": "Thanks. We will send you updates about this campaign here. Reply STOP at "
                   "any time to stop them.",
    "updates_no": "OK, no updates. Thank you for signing!",
    "petition_closed": "This petition closed on {closed} and can no longer be signed. "
                       "Thank you for your support: {count} people signed.",
    "already_signed": "You have already signed this petition (signature no. {number} here), "
                      "thank you! {count} people have signed so far.",
    "status": "What we hold about you:\n{details}",
    "status_nothing": "We hold no personal details about you, only this conversation.",
    "stopped": "You will get no more messages from {short_name} here. Reply START to resume.",
    "started": "OK, we will answer your messages here again.",
    "delete_confirm": "This erases your name, postcode and contact details and withdraws your "
                      "signature. Shall we delete them?",
    "deleted": "Done: your personal data has been erased and any signature withdrawn. "
               "Thank you for your support.",
    "not_understood": "Sorry, I did not understand that. Please try again.",
    "not_understood_choose": "Sorry, I did not understand that. Please choose one of these.",
    "status_signature": "You signed \"{title}\" on {date} by {channel} (signature no. "
                        "{number} here) as {name}, {place}.",
    "status_updates": "Updates about it here: {updates}.",
    "status_in_progress": "Not signed yet: we have your name as {name} for this signing.",
    "status_voice": "Why you signed, in your words: \"{text}\" ({voice_state}).",
    "voice_pending": "our team has not read it yet",
    "voice_published": "shown without your name",
    "voice_private": "not published",
    "status_inbox": "Messages you have sent to our team: {count}.",
    "place_postcode": "Postcode: {postcode}",
    "place_country": "Country: {country}",
    # The two consent questions come from [privacy] in config.toml, with its version.
    "consent": "We will store your name, postcode and this contact to count your signature "
               "and hand the petition to {decision_makers}. You must be {minimum_age} or "
               "over. Privacy notice: {privacy_url}",
    "ask_updates": "Would you like updates about this campaign on this channel?",
    "offer_link": "Signed already by text message or WhatsApp? If you like, share your phone "
                  "number with the button below so that we count you once.",
    "phone_linked": "Thank you: this chat is now linked to your phone number.",
    "contact_refused": "Please share your own phone number, not someone else's.",
    "ask_voice": "In a sentence or two, why did you sign? Our team reads every message before "
                 "anyone else sees it, and never publishes your name. Please do not name or "
                 "identify other people. Up to {max_length} characters, or reply NO to "
                 "skip.",
    "voice_invalid": "Please send a short message (up to {max_length} characters), or NO to "
                     "skip.",
    "ask_publish": "Thank you. May we publish your words, without your name, to show why "
                   "people support the petition?",
    "voice_thanks": "Thank you. Our team will read it before it is published.",
    "voice_not_kept": "OK, we have not kept your message. Thank you for signing!",
    # The signposting reply comes from [safeguarding] in config.toml.
    "signpost": "It sounds like things may be hard right now. If you need help, call NHS 111, "
                "or 999 in an emergency. Samaritans are there day and night on 116 123 "
                "(free). Our team will read your message.",
    "voices": "Why people signed:\n{lines}",
    "voice_line": "\"{text}\" ({place})",
    # Asked again where a supporter was, after DELETE then NO, or a message for a person.
    "consent_again": "Would you still like to sign, on the terms we sent you?",
    "name_again": "To sign, please send your full name.",
    "postcode_again": "What is your UK postcode? If you live outside the UK, reply NONE.",
    "voice_again": "Why did you sign? Up to {max_length} characters, or reply NO to skip.",
    "delete_kept": "Nothing has been deleted.",
    # The staff inbox: words the bot cannot answer are kept for a person.
    "ask_person": "What would you like to say to the {short_name} team? Please send it in one "
                  "message.",
    "inbox_told": "Thank you. Someone from {short_name} reads these messages and will answer "
                  "{answer}.",
    "inbox_soon": "as soon as they can",
    "inbox_noted": "Thank you, we have passed this on to the team.",
    "over_budget": "You have sent us a lot of messages, so we will pause our replies for a "
                   "few minutes. STOP and DELETE still work meanwhile.",
}

# Button labels for Telegram; SMS and WhatsApp show the keyword itself.
LABELS: dict[str, str] = {
    "SIGN": "Sign the petition", "MORE": "Read more", "INFO": "Info", "HELP": "Help",
    "YES": "Yes", "NO": "No", "EDIT": "Edit", "NONE": "I live outside the UK",
    "STATUS": "My data", "UPDATES": "Get updates", "START": "Start again", "DELETE": "Delete",
    "SHARE_PHONE": "Share my phone number", "VOICE": "Why I signed",
    "PERSON": "Write to a person",
}


def fields(key: str) -> set[str]:
    """The placeholder names a text's default uses."""
    return {name for _, name, _, _ in string.Formatter().parse(DEFAULTS[key]) if name}


class Texts:
    """Renders text keys with parameters, staff overrides first."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.templates = {**DEFAULTS, **(overrides or {})}

    def render(self, phrase: Phrase, common: Mapping[str, object] | None = None) -> str:
        """The phrase's text, nested phrases rendered, `common` filling what params do not."""
        if phrase.key == LINES:
            return "\n".join(self.render(line, common) for line in phrase.params["lines"])
        params: dict[str, object] = dict(common or {})
        for name, value in phrase.params.items():
            if isinstance(value, Phrase):
                value = self.render(value, common)
            elif isinstance(value, tuple) and all(isinstance(v, Phrase) for v in value):
                value = "\n".join(self.render(v, common) for v in value)
            params[name] = value
        return self.templates[phrase.key].format_map(_Missing(params))


class _Missing(dict[str, object]):
    """Leaves an unknown placeholder visible rather than failing a reply."""

    def __init__(self, params: Mapping[str, object]) -> None:
        super().__init__(params)

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
