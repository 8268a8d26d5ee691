"""The conversation: one inbound message in, the next state, replies and effects out.

Rules:
1. Pure. No I/O, no clock, no database, no provider library: the shell passes in what it
   has loaded (the supporter's facts, the petitions) and carries out the effects.
2. Global keywords first (STOP, START, HELP, STATUS, DELETE, RESTART), then the step's
   own answer from the STEPS table: each step's choices, in the order they are offered
   (and numbered, on SMS and WhatsApp), the step each leads to, and what any other
   message gets.
3. Input a step cannot use gets a re-prompt and the state unchanged; nothing personal is
   asked before the consent step's YES, and `Sign` only comes out of the review step.
4. A supporter who said STOP gets one acknowledgement, then silence until START.
5. Replies come out final: the thanks for signing need the supporter's number, so the
   review's YES first asks the shell to sign (`Sign`, no reply) and, asked again with
   `Context.signed`, answers with the number and the new count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

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
class Signed:
    """The signature a `Sign` effect made (or found: one per person and petition)."""

    number: int
    total: int  # the petition's count with it, everywhere


@dataclass(frozen=True)
class Context:
    petitions: Mapping[str, PetitionView]
    default: str
    supporter: SupporterView = SupporterView()
    privacy_version: str = ""
    offer_phone_link: bool = False  # the channel can prove a phone number (Telegram)
    distress_words: tuple[str, ...] = ()  # a voice with one of these gets signposting
    telegram_username: str = ""  # the bot's, once known: signers get their own share link
    signed: Signed | None = None  # the signature this message made, once the shell made it


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



# How a step answers: handlers get the turn and the state the choice leads to (the step it
# names, with that step's options; the state as it was for a choice that stays).
Handler = Callable[[_Turn, State], Outcome]


@dataclass(frozen=True)
class Choice:
    """A keyword a step answers: the step it leads to and what is said there."""

    keyword: str
    to: Step | None = None  # None: the step stays (or, for DELETING's NO, the handler says)
    then: Handler | None = None  # None: a global keyword, answered before any step
    when: Callable[[_Turn], bool] | None = None  # offered and answered only when this holds
    shown: bool = True  # offered: among the step's options (numbered on SMS and WhatsApp)


@dataclass(frozen=True)
class Rule:
    """A step's choices, in the order they are offered, and what any other message gets."""

    choices: tuple[Choice, ...]
    otherwise: Callable[[_Turn], Outcome]


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
    if _wants_to_stop(text, inbound.opt_out):
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
    return _answer(turn)


def _answer(t: _Turn) -> Outcome:
    """The step's own answer, from STEPS: the choice named, or the step's `otherwise`."""
    step = t.state.step
    if step == Step.MENU and t.signature:  # signed meanwhile, on another channel
        step = Step.SIGNED
    elif step == Step.SIGNED and t.signature is None:  # withdrawn meanwhile (a DELETE)
        return _greet(replace(t, state=State(petition=t.state.petition)))
    rule = STEPS[step]
    for choice in rule.choices:
        if choice.keyword == t.keyword and choice.then and (
                choice.when is None or choice.when(t)):
            return choice.then(t, t.state if choice.to is None else _enter(t, choice.to))
    return rule.otherwise(t)


def _options(step: Step, t: _Turn) -> tuple[str, ...]:
    """The keywords `step` offers the supporter now, in order."""
    return tuple(c.keyword for c in STEPS[step].choices
                 if c.shown and (c.when is None or c.when(t)))


def _enter(t: _Turn, step: Step, **changes: Any) -> State:
    """The state at `step`, with that step's options."""
    return replace(t.state, step=step, options=_options(step, t), **changes)


def _start_over(entered: State) -> State:
    """`entered` without the details collected for a signature."""
    return State(step=entered.step, petition=entered.petition, referral=entered.referral,
                 options=entered.options)


def _petition_named(ctx: Context, code: str) -> PetitionView | None:
    code = code.upper()
    return next((p for p in ctx.petitions.values() if code in (p.code, p.slug.upper())), None)


def _wants_to_stop(text: str, opt_out: str) -> bool:
    """STOP (or UNSUBSCRIBE, STOPALL...) alone, or a message that starts with STOP."""
    words = text.upper().split()
    first = words[0].lstrip("/").strip(".!,?") if words else ""
    return opt_out == "STOP" or (
        first in STOP_WORDS and (len(words) == 1 or first in ("STOP", "STOPALL", "UNSUBSCRIBE")))


def shows_voices(outcome: Outcome) -> bool:
    """Whether `outcome` answers INFO, the only reply that lists supporters' voices (which
    the shell reads only then, and asks again with)."""
    return any(reply.phrase.key == "info" for reply in outcome.replies)


def unanswered(outcome: Outcome) -> Outcome:
    """`outcome` for a person past their reply budget's notice: it takes effect, unsaid. A
    DELETE whose question was not asked must not erase on a later YES: it asks first."""
    state = outcome.state
    if state.step == Step.DELETING:
        state = replace(state, options=())
    return replace(outcome, state=state, replies=())


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
    state = _enter(t, Step.DELETING, resume=resume)
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


# What each choice says -----------------------------------------------------------------

def _ask_consent(t: _Turn, s: State) -> Outcome:
    return Outcome(s, (Reply(Phrase("consent", {"decision_makers": t.petition.decision_makers}),
                             s.options),))


def _consent_given(t: _Turn, s: State) -> Outcome:
    grant = GrantConsent(Purpose.SIGN, t.petition.slug, t.ctx.privacy_version)
    return Outcome(s, (Reply(Phrase("ask_name")),), (grant,))


def _consent_declined(t: _Turn, s: State) -> Outcome:
    # "Nothing has been stored": drop details left from an earlier try.
    state = _start_over(s)
    return Outcome(state, (Reply(Phrase("consent_declined"), state.options),))


def _ask_country(t: _Turn, s: State) -> Outcome:
    return Outcome(s, (Reply(Phrase("ask_country")),))


def _sign(t: _Turn, s: State) -> Outcome:
    details = t.state
    nation = nation_of(details.postcode) if details.postcode else Nation.OUTSIDE_UK
    sign = Sign(t.petition.slug, details.name, details.postcode, details.country, nation,
                details.referral)
    state = _start_over(s)
    made = t.ctx.signed
    if made is None:  # the shell signs, then asks again with the number it took
        return Outcome(state, (), (sign,))
    thanks = Phrase("signed", {"name": details.name, "number": made.number,
                               "count": _count(made.total),
                               "share_link": _share_link(t, made.number)})
    return Outcome(state, (Reply(thanks), Reply(Phrase("ask_updates"), state.options)), (sign,))


def _edit(t: _Turn, s: State) -> Outcome:
    return Outcome(s, (Reply(Phrase("ask_name")),))


def _cancel_review(t: _Turn, s: State) -> Outcome:
    state = _start_over(s)
    return Outcome(state, (Reply(Phrase("review_cancelled"), state.options),))


def _subscribe(t: _Turn, s: State) -> Outcome:
    slug = t.petition.slug
    subscribed = replace(t.ctx.supporter, subscribed=t.ctx.supporter.subscribed | {slug})
    # The options once subscribed: UPDATES is no longer one of them.
    state = replace(s, options=_options(Step.SIGNED, replace(
        t, ctx=replace(t.ctx, supporter=subscribed))))
    return Outcome(state, (Reply(Phrase("updates_yes"), state.options),), (
        GrantConsent(Purpose.UPDATES, slug, t.ctx.privacy_version), Subscribe(slug)))


def _no_updates(t: _Turn, s: State) -> Outcome:
    return Outcome(s, (Reply(Phrase("updates_no"), s.options),))


def _ask_updates(t: _Turn, s: State) -> Outcome:
    return Outcome(s, (Reply(Phrase("ask_updates"), s.options),))


def _ask_voice(t: _Turn, s: State) -> Outcome:
    state = replace(s, voice="")
    return Outcome(state, (Reply(Phrase("ask_voice", {"max_length": MAX_VOICE})),))


def _erase(t: _Turn, s: State) -> Outcome:
    if not t.state.options:  # the question never reached them (replies were paused)
        return _delete(t)
    return Outcome(State(), (Reply(Phrase("deleted")),), (Erase(),))


def _keep(t: _Turn, s: State) -> Outcome:
    resumed = _enter(t, t.state.resume)  # back to the step DELETE interrupted
    return Outcome(resumed, (Reply(Phrase("delete_kept"), resumed.options),))


def _voice_not_kept(t: _Turn, s: State) -> Outcome:
    back = replace(s, voice="")
    return Outcome(back, (Reply(Phrase("voice_not_kept"), back.options),))


def _publish_voice(t: _Turn, s: State) -> Outcome:
    back = replace(s, voice="")
    slug = t.petition.slug
    return Outcome(back, (Reply(Phrase("voice_thanks"), back.options),), (
        GrantConsent(Purpose.PUBLISH_VOICE, slug, t.ctx.privacy_version),
        SaveVoice(slug, t.state.voice, publish=True)))


def _more(t: _Turn, s: State) -> Outcome:
    """The issue, page by page: each page offers its own choices (MORE until the last)."""
    pages = t.petition.pages or ("",)
    index = s.page % len(pages)
    last = index == len(pages) - 1
    offered: tuple[str, ...] = ("SIGN", "INFO", "HELP") if last else (
        "MORE", "SIGN", "INFO", "HELP")
    if t.signature:
        offered = tuple(o for o in offered if o != "SIGN")
    state = replace(s, page=index + 1, options=offered)
    phrase = Phrase("page_last" if last else "page",
                    {"page_text": pages[index], "page": index + 1, "pages": len(pages)})
    return Outcome(state, (Reply(phrase, offered),))


def _info(t: _Turn, s: State) -> Outcome:
    p = t.petition
    parts = [f"{_count(count)} on {source}" for source, count in p.external]
    breakdown = " + ".join([*parts, f"{_count(p.here)} here"])
    if p.external:
        breakdown += f" = {_count(p.total)}"
    state = replace(s, options=s.options or _options(Step.MENU, t))
    info = Reply(Phrase("info", {
        "title": p.title, "decision_makers": p.decision_makers, "organiser": p.organiser,
        "created": p.created.strftime("%-d %B %Y"), "count_breakdown": breakdown}),
        () if p.voices else state.options)
    if not p.voices:
        return Outcome(state, (info,))
    said = tuple(Phrase("voice_line", {"text": text, "place": place}) for text, place in p.voices)
    return Outcome(state, (info, Reply(Phrase("voices", {"lines": said}), state.options)))


# What any other message gets ------------------------------------------------------------

def _greet(t: _Turn) -> Outcome:
    if t.signature:
        return _welcome_back(replace(t, keyword=""))
    p = t.petition
    state = _enter(t, Step.MENU, petition=p.slug, page=0)
    replies = [Reply(Phrase("greeting", {
        "organiser": p.organiser, "title": p.title, "summary": p.summary,
        "count": _count(p.total)}), state.options)]
    if t.ctx.offer_phone_link and t.state.step == Step.NEW:
        replies.append(Reply(Phrase("offer_link"), ("SHARE_PHONE",)))
    return Outcome(state, tuple(replies))


def _name(t: _Turn) -> Outcome:
    cleaned = valid_name(t.text)
    if cleaned is None:
        return Outcome(t.state, (Reply(Phrase("name_invalid", {"max_length": MAX_NAME})),))
    state = _enter(t, Step.POSTCODE, name=cleaned)
    return Outcome(state, (Reply(Phrase("ask_postcode", {"name": cleaned}), state.options),))


def _postcode(t: _Turn) -> Outcome:
    canonical = normalise_postcode(t.text)
    if canonical is None:
        return Outcome(t.state, (Reply(Phrase("postcode_invalid"), t.state.options),))
    return _review(t, postcode=canonical, country="")


def _country(t: _Turn) -> Outcome:
    cleaned = valid_country(t.text)
    if cleaned is None:
        return Outcome(t.state, (Reply(Phrase("country_invalid")),))
    if cleaned.upper().replace(".", "") in UK_NAMES:
        state = _enter(t, Step.POSTCODE)
        return Outcome(state, (Reply(Phrase("ask_postcode", {"name": t.state.name}),
                                     state.options),))
    return _review(t, country=cleaned, postcode="")


def _review(t: _Turn, **place: str) -> Outcome:
    state = _enter(t, Step.REVIEW, **place)
    return Outcome(state, (Reply(Phrase("review", {
        "name": state.name, "place": _place(state.postcode, state.country)}), state.options),))


def _welcome_back(t: _Turn) -> Outcome:
    assert t.signature is not None
    state = _enter(t, Step.SIGNED)
    key = "already_signed" if t.keyword == "SIGN" else "greeting_signed"
    return Outcome(state, (Reply(Phrase(key, {
        "title": t.petition.title, "number": t.signature.number,
        "count": _count(t.petition.total)}), state.options),))


def _voice(t: _Turn) -> Outcome:
    said = valid_voice(t.inbound.text)
    if said is None:
        return Outcome(t.state, (Reply(Phrase("voice_invalid", {"max_length": MAX_VOICE})),))
    if suggests_distress(said, t.ctx.distress_words):
        # Safeguarding first: signpost help, and put it in front of staff (never published).
        back = _enter(t, Step.SIGNED, voice="")
        return Outcome(back, (Reply(Phrase("signpost"), back.options),),
                       (SaveVoice(t.petition.slug, said, publish=False, flagged=True),))
    state = _enter(t, Step.VOICE_CONSENT, voice=said)
    return Outcome(state, (Reply(Phrase("ask_publish"), state.options),))


def _reprompt(t: _Turn) -> Outcome:
    """Unusable input: say so, repeat the choices, change nothing."""
    if t.state.options:
        return Outcome(t.state, (Reply(Phrase("not_understood_choose"), t.state.options),))
    return Outcome(t.state, (Reply(Phrase("not_understood")),))


# When a choice is offered ----------------------------------------------------------------

def _unsigned(t: _Turn) -> bool:
    return t.signature is None


def _has_signed(t: _Turn) -> bool:
    return t.signature is not None


def _unsubscribed(t: _Turn) -> bool:
    return t.petition.slug not in t.ctx.supporter.subscribed


def _one_word(t: _Turn) -> bool:
    return len(t.text.split()) == 1


# The steps -------------------------------------------------------------------------------

STEPS: dict[Step, Rule] = {
    Step.NEW: Rule((), otherwise=_greet),
    Step.MENU: Rule((
        Choice("SIGN", Step.CONSENT, _ask_consent, when=_unsigned),
        Choice("STATUS", when=_has_signed),
        Choice("MORE", None, _more),
        Choice("INFO", None, _info),
        Choice("HELP"),
    ), otherwise=_reprompt),
    Step.CONSENT: Rule((
        Choice("YES", Step.NAME, _consent_given),
        Choice("NO", Step.MENU, _consent_declined),
    ), otherwise=_reprompt),
    Step.NAME: Rule((), otherwise=_name),
    Step.POSTCODE: Rule((
        Choice("NONE", Step.COUNTRY, _ask_country),
    ), otherwise=_postcode),
    Step.COUNTRY: Rule((), otherwise=_country),
    Step.REVIEW: Rule((
        Choice("YES", Step.UPDATES, _sign),
        Choice("EDIT", Step.NAME, _edit),
        Choice("NO", Step.MENU, _cancel_review, shown=False),
    ), otherwise=_reprompt),
    Step.UPDATES: Rule((
        Choice("YES", Step.SIGNED, _subscribe),
        Choice("NO", Step.SIGNED, _no_updates),
    ), otherwise=_reprompt),
    Step.SIGNED: Rule((
        Choice("UPDATES", Step.UPDATES, _ask_updates, when=_unsubscribed),
        Choice("VOICE", Step.VOICE, _ask_voice),
        Choice("MORE", None, _more),
        Choice("INFO", None, _info),
        Choice("STATUS"),
        Choice("HELP"),
    ), otherwise=_welcome_back),
    Step.DELETING: Rule((
        Choice("YES", Step.NEW, _erase),
        Choice("NO", None, _keep),  # back to the step DELETE interrupted
    ), otherwise=_reprompt),
    Step.VOICE: Rule((
        Choice("NO", Step.SIGNED, _voice_not_kept, when=_one_word, shown=False),
    ), otherwise=_voice),
    Step.VOICE_CONSENT: Rule((
        Choice("YES", Step.SIGNED, _publish_voice),
        Choice("NO", Step.SIGNED, _voice_not_kept),
    ), otherwise=_reprompt),
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


def _share_link(t: _Turn, number: int) -> str:
    """A Telegram signer's own link (whoever signs through it is credited to them), or the
    petition's."""
    if t.inbound.channel == Channel.TELEGRAM and t.ctx.telegram_username:
        return f"https://t.me/{t.ctx.telegram_username}?start={t.petition.code}_r{number}"
    return t.petition.share_url


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
           "STOP_WORDS", "YES_WORDS", "binding_over_budget", "clean", "shows_voices", "unanswered",
           "valid_country", "valid_name"]
