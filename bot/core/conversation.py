"""The conversation: one inbound message in, the next state, replies and effects out.

Rules:
1. Pure. No I/O, no clock, no database, no provider library: the shell passes in what it
   has loaded (the supporter's facts, the petitions) and carries out the effects.
2. Global keywords first (STOP, START, HELP, STATUS, DELETE, RESTART), then the step's
   handler, one small function per step, wired in the STEPS table.
3. Input a step cannot use gets a re-prompt and the state unchanged; nothing personal is
   asked before the consent step's YES, and `Sign` only comes out of the review step.
4. A supporter who said STOP gets one acknowledgement, then silence until START.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum

from bot.core.inputs import (
    MAX_COUNTRY,
    MAX_NAME,
    MAX_VOICE,
    NO_WORDS,
    RESERVED,
    START_WORDS,
    STOP_WORDS,
    YES_WORDS,
    clean,
    suggests_distress,
    valid_country,
    valid_name,
    valid_voice,
)
from bot.core.postcodes import Nation, nation_of, normalise_postcode
from bot.core.texts import Phrase


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"


class Step(StrEnum):
    NEW = "new"
    MENU = "menu"
    CONSENT = "consent"
    NAME = "name"
    POSTCODE = "postcode"
    COUNTRY = "country"
    REVIEW = "review"
    UPDATES = "updates"
    SIGNED = "signed"
    DELETING = "deleting"
    VOICE = "voice"
    VOICE_CONSENT = "voice_consent"


class Purpose(StrEnum):
    SIGN = "sign"
    UPDATES = "updates"
    PUBLISH_VOICE = "publish_voice"


UK_NAMES = frozenset({"UK", "U K", "GB", "UNITED KINGDOM", "GREAT BRITAIN", "BRITAIN", "ENGLAND",
                      "SCOTLAND", "WALES", "NORTHERN IRELAND"})
PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class State:
    """What the conversation remembers between messages (stored per identity)."""

    step: Step = Step.NEW
    petition: str = ""
    page: int = 0
    name: str = ""
    postcode: str = ""
    country: str = ""
    referral: str = ""
    options: tuple[str, ...] = ()
    resume: Step = Step.MENU
    voice: str = ""


@dataclass(frozen=True)
class Inbound:
    channel: Channel
    text: str
    message_id: str = ""
    opt_out: str = ""  # a provider's own keyword match ("STOP", "START"), when it sends one
    contact: str = ""  # a shared phone contact: "own" (linked by the shell) or "other"


@dataclass(frozen=True)
class PetitionView:
    slug: str
    code: str
    title: str
    summary: str
    pages: tuple[str, ...]
    decision_makers: str
    organiser: str
    created: date
    here: int
    external: tuple[tuple[str, int], ...]
    share_url: str
    voices: tuple[tuple[str, str], ...] = ()  # approved "why I signed" (text, where from)

    @property
    def total(self) -> int:
        return self.here + sum(count for _, count in self.external)


@dataclass(frozen=True)
class SignatureView:
    petition: str
    number: int
    signed_at: datetime
    channel: Channel
    name: str
    postcode: str
    country: str


@dataclass(frozen=True)
class SupporterView:
    """Facts about the person, loaded by the shell for every message."""

    opted_out: bool = False
    signatures: tuple[SignatureView, ...] = ()
    subscribed: frozenset[str] = frozenset()  # petitions with updates on this channel

    def signature(self, slug: str) -> SignatureView | None:
        return next((s for s in self.signatures if s.petition == slug), None)


@dataclass(frozen=True)
class Context:
    petitions: Mapping[str, PetitionView]
    default: str
    supporter: SupporterView = SupporterView()
    privacy_version: str = ""
    offer_phone_link: bool = False  # the channel can prove a phone number (Telegram)
    distress_words: tuple[str, ...] = ()  # a voice with one of these gets signposting


@dataclass(frozen=True)
class Reply:
    phrase: Phrase
    options: tuple[str, ...] = ()


# Effects: what the shell must do, in order, in the same transaction.
@dataclass(frozen=True)
class GrantConsent:
    purpose: Purpose
    petition: str
    version: str


@dataclass(frozen=True)
class Sign:
    petition: str
    name: str
    postcode: str
    country: str
    nation: Nation
    referral: str


@dataclass(frozen=True)
class Subscribe:
    petition: str


@dataclass(frozen=True)
class SaveVoice:
    """Keep a "why I signed" for moderation: published only if `publish` (consented);
    `flagged` ones suggested distress and go to staff first."""

    petition: str
    text: str
    publish: bool
    flagged: bool = False


@dataclass(frozen=True)
class OptOut:
    """Stop every message on this channel; withdraws updates consent here."""


@dataclass(frozen=True)
class OptIn:
    """Resume messages on this channel (updates stay off until asked for again)."""


@dataclass(frozen=True)
class Erase:
    """Erase the supporter's personal data and withdraw every signature."""


Effect = GrantConsent | Sign | Subscribe | SaveVoice | OptOut | OptIn | Erase


@dataclass(frozen=True)
class Outcome:
    state: State
    replies: tuple[Reply, ...] = ()
    effects: tuple[Effect, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Turn:
    """One message being handled: the words, the context, the state it arrived in."""

    state: State
    inbound: Inbound
    ctx: Context
    text: str
    keyword: str

    @property
    def petition(self) -> PetitionView:
        return self.ctx.petitions.get(self.state.petition) or self.ctx.petitions[self.ctx.default]

    @property
    def signature(self) -> SignatureView | None:
        return self.ctx.supporter.signature(self.petition.slug)


def handle(state: State, inbound: Inbound, ctx: Context, now: datetime) -> Outcome:
    """Handle one inbound message."""
    del now  # every time-dependent fact reaches the core through ctx; kept for the contract
    text = clean(inbound.text, limit=1600)
    turn = _Turn(state, inbound, ctx, text, _keyword(text, state, inbound.channel))
    # Twilio marks "YES" as an opt-in (START) too: it only means START to someone opted out.
    if inbound.opt_out == "STOP" or (inbound.opt_out == "START" and ctx.supporter.opted_out):
        turn = replace(turn, keyword=inbound.opt_out)
    if ctx.supporter.opted_out:
        return _resume(turn) if turn.keyword in START_WORDS else Outcome(state)
    if wants_to_stop(inbound):
        # Whatever was being collected for a signature is forgotten with the STOP.
        forgotten = State(petition=state.petition, referral=state.referral)
        return Outcome(forgotten, (Reply(Phrase("stopped")),), (OptOut(),))
    if inbound.contact == "other":
        return Outcome(state, (Reply(Phrase("contact_refused"), state.options),))
    if inbound.contact == "own":
        greeting = _greet(replace(turn, ctx=replace(ctx, offer_phone_link=False)))
        return replace(greeting, replies=(Reply(Phrase("phone_linked")), *greeting.replies))
    words = text.split()
    global_handler = GLOBALS.get(turn.keyword)
    if global_handler and not (turn.keyword == "START" and len(words) > 1):
        return global_handler(turn)
    if turn.keyword == "START":
        return _open(turn, words[1])
    if turn.keyword == "SIGN" and len(words) == 2 and (
            state.step in (Step.NEW, Step.MENU, Step.SIGNED)):
        return _open(turn, words[1])
    return STEPS[state.step](turn)


def _petition_named(ctx: Context, code: str) -> PetitionView | None:
    code = code.upper()
    return next((p for p in ctx.petitions.values() if code in (p.code, p.slug.upper())), None)


def wants_to_stop(inbound: Inbound) -> bool:
    """STOP (or UNSUBSCRIBE, STOPALL...) alone, or a message that starts with STOP."""
    words = clean(inbound.text, limit=1600).upper().split()
    first = words[0].lstrip("/").strip(".!,?") if words else ""
    return inbound.opt_out == "STOP" or (
        first in STOP_WORDS and (len(words) == 1 or first in ("STOP", "STOPALL", "UNSUBSCRIBE")))


def binding_over_budget(before: State, outcome: Outcome) -> bool:
    """Whether `outcome` must take effect even for a person over their reply budget (who
    is then answered no more): STOP, START, and DELETE with its confirmation. Everything
    else is left as it was, so nothing happens that the person is not told about."""
    return any(isinstance(e, OptOut | OptIn | Erase) for e in outcome.effects) or (
        Step.DELETING in (before.step, outcome.state.step))


# Global keywords ---------------------------------------------------------------------

def _help(t: _Turn) -> Outcome:
    return Outcome(t.state, (Reply(Phrase("help"), t.state.options),))


def _status(t: _Turn) -> Outcome:
    lines: list[Phrase] = []
    for sig in t.ctx.supporter.signatures:
        petition = t.ctx.petitions.get(sig.petition)
        lines.append(Phrase("status_signature", {
            "title": petition.title if petition else sig.petition, "number": sig.number,
            "date": sig.signed_at.strftime("%-d %b %Y"), "channel": _channel_name(sig.channel),
            "name": sig.name, "place": _place(sig.postcode, sig.country)}))
        subscribed = "yes" if sig.petition in t.ctx.supporter.subscribed else "no"
        lines.append(Phrase("status_updates", {"updates": subscribed}))
    if t.state.name:
        lines.append(Phrase("status_in_progress", {"name": t.state.name}))
    if not lines:
        return Outcome(t.state, (Reply(Phrase("status_nothing"), t.state.options),))
    return Outcome(t.state, (Reply(Phrase("status", {"details": tuple(lines)}),
                                   t.state.options),))


def _delete(t: _Turn) -> Outcome:
    resume = t.state.resume if t.state.step == Step.DELETING else t.state.step
    state = replace(t.state, step=Step.DELETING, resume=resume, options=("YES", "NO"))
    return Outcome(state, (Reply(Phrase("delete_confirm"), state.options),))


def _restart(t: _Turn) -> Outcome:
    return _greet(replace(t, state=State(petition=t.state.petition, referral=t.state.referral)))


def _resume(t: _Turn) -> Outcome:
    words = t.text.split()
    greeting = _open(t, words[1]) if len(words) == 2 else _greet(t)
    return Outcome(greeting.state, (Reply(Phrase("started")), *greeting.replies), (OptIn(),))


GLOBALS: dict[str, Callable[[_Turn], Outcome]] = {
    "HELP": _help, "STATUS": _status, "DELETE": _delete, "RESTART": _restart, "START": _restart,
    "UNSTOP": _restart,
}


# Steps -------------------------------------------------------------------------------

def new(t: _Turn) -> Outcome:
    return _greet(t)


def menu(t: _Turn) -> Outcome:
    if t.signature:
        return signed(t)
    if t.keyword == "SIGN":
        state = replace(t.state, step=Step.CONSENT, options=("YES", "NO"))
        return Outcome(state, (Reply(Phrase("consent", {"decision_makers":
                                                        t.petition.decision_makers}),
                                     state.options),))
    if t.keyword == "MORE":
        return _more(t)
    if t.keyword == "INFO":
        return _info(t)
    return _reprompt(t)


def consent(t: _Turn) -> Outcome:
    if t.keyword == "YES":
        state = replace(t.state, step=Step.NAME, options=())
        grant = GrantConsent(Purpose.SIGN, t.petition.slug, t.ctx.privacy_version)
        return Outcome(state, (Reply(Phrase("ask_name")),), (grant,))
    if t.keyword == "NO":  # "nothing has been stored": drop details left from an earlier try
        state = State(step=Step.MENU, petition=t.state.petition, referral=t.state.referral,
                      options=_menu_options(t))
        return Outcome(state, (Reply(Phrase("consent_declined"), state.options),))
    return _reprompt(t)


def name(t: _Turn) -> Outcome:
    cleaned = valid_name(t.text)
    if cleaned is None:
        return Outcome(t.state, (Reply(Phrase("name_invalid", {"max_length": MAX_NAME})),))
    state = replace(t.state, step=Step.POSTCODE, name=cleaned, options=("NONE",))
    return Outcome(state, (Reply(Phrase("ask_postcode", {"name": cleaned}), state.options),))


def postcode(t: _Turn) -> Outcome:
    if t.keyword == "NONE":
        state = replace(t.state, step=Step.COUNTRY, options=())
        return Outcome(state, (Reply(Phrase("ask_country")),))
    canonical = normalise_postcode(t.text)
    if canonical is None:
        return Outcome(t.state, (Reply(Phrase("postcode_invalid"), t.state.options),))
    return _review(replace(t.state, postcode=canonical, country=""))


def country(t: _Turn) -> Outcome:
    cleaned = valid_country(t.text)
    if cleaned is None:
        return Outcome(t.state, (Reply(Phrase("country_invalid")),))
    if cleaned.upper().replace(".", "") in UK_NAMES:
        state = replace(t.state, step=Step.POSTCODE, options=("NONE",))
        return Outcome(state, (Reply(Phrase("ask_postcode", {"name": t.state.name}),
                                     state.options),))
    return _review(replace(t.state, country=cleaned, postcode=""))


def review(t: _Turn) -> Outcome:
    if t.keyword == "YES":
        s = t.state
        nation = nation_of(s.postcode) if s.postcode else Nation.OUTSIDE_UK
        sign = Sign(t.petition.slug, s.name, s.postcode, s.country, nation, s.referral)
        state = State(step=Step.UPDATES, petition=s.petition, referral=s.referral,
                      options=("YES", "NO"))
        return Outcome(state, (
            Reply(Phrase("signed", {"name": s.name, "share_link": t.petition.share_url})),
            Reply(Phrase("ask_updates"), state.options)), (sign,))
    if t.keyword == "EDIT":
        state = replace(t.state, step=Step.NAME, options=())
        return Outcome(state, (Reply(Phrase("ask_name")),))
    if t.keyword == "NO":
        state = State(step=Step.MENU, petition=t.state.petition, referral=t.state.referral,
                      options=_menu_options(t))
        return Outcome(state, (Reply(Phrase("review_cancelled"), state.options),))
    return _reprompt(t)


def updates(t: _Turn) -> Outcome:
    slug = t.petition.slug
    if t.keyword == "YES":
        state = replace(t.state, step=Step.SIGNED, options=_signed_options(t, subscribed=True))
        return Outcome(state, (Reply(Phrase("updates_yes"), state.options),), (
            GrantConsent(Purpose.UPDATES, slug, t.ctx.privacy_version), Subscribe(slug)))
    if t.keyword == "NO":
        state = replace(t.state, step=Step.SIGNED, options=_signed_options(t))
        return Outcome(state, (Reply(Phrase("updates_no"), state.options),))
    return _reprompt(t)


def signed(t: _Turn) -> Outcome:
    if t.signature is None:  # withdrawn elsewhere (DELETE on another channel)
        return _greet(replace(t, state=State(petition=t.state.petition)))
    if t.keyword == "MORE":
        return _more(t)
    if t.keyword == "INFO":
        return _info(t)
    if t.keyword == "UPDATES" and t.petition.slug not in t.ctx.supporter.subscribed:
        state = replace(t.state, step=Step.UPDATES, options=("YES", "NO"))
        return Outcome(state, (Reply(Phrase("ask_updates"), state.options),))
    if t.keyword == "VOICE":
        state = replace(t.state, step=Step.VOICE, options=(), voice="")
        return Outcome(state, (Reply(Phrase("ask_voice", {"max_length": MAX_VOICE})),))
    state = replace(t.state, step=Step.SIGNED, options=_signed_options(t))
    key = "already_signed" if t.keyword == "SIGN" else "greeting_signed"
    return Outcome(state, (Reply(Phrase(key, {
        "title": t.petition.title, "number": t.signature.number,
        "count": _count(t.petition.total)}), state.options),))


def deleting(t: _Turn) -> Outcome:
    if t.keyword == "YES":
        if not t.state.options:  # the question never reached them (replies were paused)
            return _delete(t)
        return Outcome(State(), (Reply(Phrase("deleted")),), (Erase(),))
    if t.keyword == "NO":
        resumed = replace(t.state, step=t.state.resume, options=_options_for(t, t.state.resume))
        return Outcome(resumed, (Reply(Phrase("delete_kept"), resumed.options),))
    return _reprompt(t)


def voice(t: _Turn) -> Outcome:
    back = replace(t.state, step=Step.SIGNED, options=_signed_options(t), voice="")
    if t.keyword == "NO" and len(t.text.split()) == 1:
        return Outcome(back, (Reply(Phrase("voice_not_kept"), back.options),))
    said = valid_voice(t.inbound.text)
    if said is None:
        return Outcome(t.state, (Reply(Phrase("voice_invalid", {"max_length": MAX_VOICE})),))
    if suggests_distress(said, t.ctx.distress_words):
        # Safeguarding first: signpost help, and put it in front of staff (never published).
        return Outcome(back, (Reply(Phrase("signpost"), back.options),),
                       (SaveVoice(t.petition.slug, said, publish=False, flagged=True),))
    state = replace(t.state, step=Step.VOICE_CONSENT, voice=said, options=("YES", "NO"))
    return Outcome(state, (Reply(Phrase("ask_publish"), state.options),))


def voice_consent(t: _Turn) -> Outcome:
    back = replace(t.state, step=Step.SIGNED, options=_signed_options(t), voice="")
    if t.keyword == "YES":
        slug = t.petition.slug
        return Outcome(back, (Reply(Phrase("voice_thanks"), back.options),), (
            GrantConsent(Purpose.PUBLISH_VOICE, slug, t.ctx.privacy_version),
            SaveVoice(slug, t.state.voice, publish=True)))
    if t.keyword == "NO":
        return Outcome(back, (Reply(Phrase("voice_not_kept"), back.options),))
    return _reprompt(t)


STEPS: dict[Step, Callable[[_Turn], Outcome]] = {
    Step.NEW: new, Step.MENU: menu, Step.CONSENT: consent, Step.NAME: name,
    Step.POSTCODE: postcode, Step.COUNTRY: country, Step.REVIEW: review,
    Step.UPDATES: updates, Step.SIGNED: signed, Step.DELETING: deleting,
    Step.VOICE: voice, Step.VOICE_CONSENT: voice_consent,
}


# Shared pieces -------------------------------------------------------------------------

def _open(t: _Turn, payload: str) -> Outcome:
    """Open a petition named by code (SIGN CODE, or a deep-link payload CODE_referral)."""
    code, _, referral = payload.partition("_")
    petition = _petition_named(t.ctx, code) if payload and PAYLOAD.match(payload) else None
    if payload and petition is None:
        greeting = _greet(t)
        return replace(greeting, replies=(Reply(Phrase("unknown_petition")), *greeting.replies))
    slug = petition.slug if petition else t.petition.slug
    state = State(petition=slug, referral=referral[:64] if petition else t.state.referral)
    return _greet(replace(t, state=state))


def _greet(t: _Turn) -> Outcome:
    if t.signature:
        return signed(replace(t, keyword=""))
    p = t.petition
    state = replace(t.state, step=Step.MENU, petition=p.slug, page=0, options=_menu_options(t))
    replies = [Reply(Phrase("greeting", {
        "organiser": p.organiser, "title": p.title, "summary": p.summary,
        "count": _count(p.total)}), state.options)]
    if t.ctx.offer_phone_link and t.state.step == Step.NEW:
        replies.append(Reply(Phrase("offer_link"), ("SHARE_PHONE",)))
    return Outcome(state, tuple(replies))


def _more(t: _Turn) -> Outcome:
    pages = t.petition.pages or ("",)
    index = t.state.page % len(pages)
    last = index == len(pages) - 1
    options: tuple[str, ...] = ("SIGN", "INFO", "HELP") if last else (
        "MORE", "SIGN", "INFO", "HELP")
    if t.signature:
        options = tuple(o for o in options if o != "SIGN")
    state = replace(t.state, page=index + 1, options=options)
    phrase = Phrase("page_last" if last else "page",
                    {"page_text": pages[index], "page": index + 1, "pages": len(pages)})
    return Outcome(state, (Reply(phrase, options),))


def _info(t: _Turn) -> Outcome:
    p = t.petition
    parts = [f"{_count(count)} on {source}" for source, count in p.external]
    breakdown = " + ".join([*parts, f"{_count(p.here)} here"])
    if p.external:
        breakdown += f" = {_count(p.total)}"
    state = replace(t.state, options=t.state.options or _menu_options(t))
    info = Reply(Phrase("info", {
        "title": p.title, "decision_makers": p.decision_makers, "organiser": p.organiser,
        "created": p.created.strftime("%-d %B %Y"), "count_breakdown": breakdown}),
        () if p.voices else state.options)
    if not p.voices:
        return Outcome(state, (info,))
    said = tuple(Phrase("voice_line", {"text": text, "place": place}) for text, place in p.voices)
    return Outcome(state, (info, Reply(Phrase("voices", {"lines": said}), state.options)))


def _review(state: State) -> Outcome:
    state = replace(state, step=Step.REVIEW, options=("YES", "EDIT"))
    return Outcome(state, (Reply(Phrase("review", {
        "name": state.name, "place": _place(state.postcode, state.country)}), state.options),))


def _reprompt(t: _Turn) -> Outcome:
    """Unusable input: say so, repeat the choices, change nothing."""
    if t.state.options:
        return Outcome(t.state, (Reply(Phrase("not_understood_choose"), t.state.options),))
    return Outcome(t.state, (Reply(Phrase("not_understood")),))


def _menu_options(t: _Turn) -> tuple[str, ...]:
    return ("STATUS", "MORE", "INFO", "HELP") if t.signature else ("SIGN", "MORE", "INFO", "HELP")


def _signed_options(t: _Turn, subscribed: bool = False) -> tuple[str, ...]:
    subscribed = subscribed or t.petition.slug in t.ctx.supporter.subscribed
    return ("VOICE", "MORE", "INFO", "STATUS", "HELP") if subscribed else (
        "UPDATES", "VOICE", "MORE", "INFO", "STATUS", "HELP")


def _options_for(t: _Turn, step: Step) -> tuple[str, ...]:
    return {
        Step.NEW: (), Step.MENU: _menu_options(t), Step.CONSENT: ("YES", "NO"),
        Step.NAME: (), Step.POSTCODE: ("NONE",), Step.COUNTRY: (),
        Step.REVIEW: ("YES", "EDIT"), Step.UPDATES: ("YES", "NO"),
        Step.SIGNED: _signed_options(t), Step.DELETING: ("YES", "NO"),
        Step.VOICE: (), Step.VOICE_CONSENT: ("YES", "NO"),
    }[step]


def _keyword(text: str, state: State, channel: Channel) -> str:
    """The keyword a message means: its first word, upper-cased, or an option's number."""
    # isdecimal, not isdigit: "²" and "⑴" are digits that int() refuses.
    if channel != Channel.TELEGRAM and text.isdecimal() and state.options:
        index = int(text) - 1
        return state.options[index] if 0 <= index < len(state.options) else ""
    if text.upper().strip(" .!") in YES_WORDS:
        return "YES"
    if text.upper().strip(" .!") in NO_WORDS:
        return "NO"
    first = text.split(maxsplit=1)[0] if text.split() else ""
    return first.lstrip("/").upper().strip(".!,?")


def _place(postcode: str, country: str) -> Phrase:
    if postcode:
        return Phrase("place_postcode", {"postcode": postcode})
    return Phrase("place_country", {"country": country})


def _count(number: int) -> str:
    return f"{number:,}"


def _channel_name(channel: Channel) -> str:
    return {Channel.SMS: "SMS", Channel.WHATSAPP: "WhatsApp", Channel.TELEGRAM: "Telegram"}[
        channel]


__all__ = ["MAX_COUNTRY", "MAX_NAME", "MAX_VOICE", "NO_WORDS", "RESERVED", "START_WORDS",
           "STOP_WORDS", "YES_WORDS", "binding_over_budget", "clean", "valid_country", "valid_name"]
