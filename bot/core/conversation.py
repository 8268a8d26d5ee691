"""The conversation: one inbound message in, the next state, replies and effects out.

Rules:
1. Pure. No I/O, no clock, no database, no provider library: the shell passes in what it
   has loaded (the supporter's facts, the petitions) and carries out the effects.
2. Global keywords first (STOP, START, HELP, STATUS, DELETE, RESTART, PERSON), then the
   step's own answer from the STEPS table: each step's choices, in the order they are
   offered (and numbered, on SMS and WhatsApp), the step each leads to, what any other
   message gets, and the step's question, asked again when the supporter is back at it.
   A number means what the supporter last saw next to it (`State.options`), and a word
   keeps its number from step to step where it can (MORE is 2, INFO 3, HELP 4).
3. Input a step cannot use gets a re-prompt and the state unchanged; nothing personal is
   asked before the consent step's YES, and `Sign` only comes out of the review step.
   Words meant for a person (a question, a story, thanks: anything after signing that is
   no keyword) are kept for the staff inbox (`ForAPerson`), the state unchanged; words
   that suggest distress get the signposting reply at once, at any step, flagged.
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

from bot.core.gsm import segments, to_gsm7
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
    for_a_person,
    storable,
    suggests_distress,
    valid_country,
    valid_name,
    valid_voice,
    wants,
)
from bot.core.pages import paginate
from bot.core.postcodes import Nation, nation_of, normalise_postcode
from bot.core.texts import DEFAULTS, Phrase, choices_line, lines


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
    PERSON = "person"  # writing to someone at the charity; then back to `resume`


class Purpose(StrEnum):
    SIGN = "sign"
    UPDATES = "updates"
    PUBLISH_VOICE = "publish_voice"


SMS_SEGMENTS = 3  # an SMS reply fits in this many segments
SMS_PART = 153  # GSM-7 characters in each segment of a long SMS
LONG_PAGE = 1000  # WhatsApp and Telegram: a page of the issue is at most one screen
STATUS_VOICE = 80  # SMS: characters of a voice quoted in STATUS
FIRST_QUESTION = 5  # words: a first message that asks this much is kept for a person
FIRST_STORY = 15  # words: and one that tells this much
MAX_KEPT = 4096  # characters of a message kept for a person (a Telegram message's longest)
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
    # The consent version of the wording last shown to them: a YES given after staff
    # reworded it is recorded against what they read, not against the new wording.
    consent_version: str = ""


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
    issue: str  # the whole text, paged for each channel by issue_pages()
    decision_makers: str
    organiser: str
    created: date
    here: int
    external: tuple[tuple[str, int], ...]
    share_url: str
    voices: tuple[tuple[str, str], ...] = ()  # approved "why I signed" (text, where from)
    closed: date | None = None  # closed on this day (today or before): no more signatures

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
class VoiceView:
    """A "why I signed" the person left: `status` is pending, approved or rejected."""

    petition: str
    text: str
    status: str
    publish: bool = False  # they agreed to its publication


@dataclass(frozen=True)
class SupporterView:
    """Facts about the person, loaded by the shell for every message."""

    opted_out: bool = False
    signatures: tuple[SignatureView, ...] = ()
    subscribed: frozenset[str] = frozenset()  # petitions with updates on this channel
    voices: tuple[VoiceView, ...] = ()  # shown under STATUS

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
    inbox_told: bool = False  # their open inbox conversation already said who reads it
    inbox_answer: str = ""  # when to expect an answer, e.g. "within 2 working days" (GSM-7)
    inbox_messages: int = 0  # messages they have sent to the team (for STATUS)


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
class ForAPerson:
    """The supporter's words, kept for a person to read (the staff inbox)."""
    text: str
    flagged: bool  # words that suggest distress


@dataclass(frozen=True)
class OptOut:
    """Stop every message on this channel; withdraws updates consent here."""


@dataclass(frozen=True)
class OptIn:
    """Resume messages on this channel (updates stay off until asked for again)."""


@dataclass(frozen=True)
class Erase:
    """Erase the supporter's personal data and withdraw every signature."""


Effect = GrantConsent | Sign | Subscribe | SaveVoice | ForAPerson | OptOut | OptIn | Erase


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
    """A step's choices, in the order they are offered, what any other message gets, and
    the step's question, asked again when the supporter is back at the step (after DELETE
    then NO, or a message for a person); None where the choices say it all."""

    choices: tuple[Choice, ...]
    otherwise: Callable[[_Turn], Outcome]
    question: Callable[[_Turn, State], Phrase] | None = None


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
    if suggests_distress(text, ctx.distress_words):
        return _signpost(turn)  # whatever the step: help first, and a person reads it
    words = text.split()
    if state.step in FREE_TEXT and len(words) > 1:
        return _answer(turn)  # a sentence that begins with a keyword ("Help my mum ...")
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
    if step == Step.NEW and t.keyword in FIRST_WORDS:  # "Text SIGN to ...": do it at once
        t = replace(t, state=replace(t.state, step=Step.MENU, petition=t.petition.slug))
        step = Step.MENU
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
    is then answered no more): STOP, START, and DELETE with its confirmation; and words
    that suggest distress, which reach a person whatever the budget. Everything else is
    left as it was, so nothing happens that the person is not told about."""
    return any(isinstance(e, OptOut | OptIn | Erase) or (isinstance(e, ForAPerson) and e.flagged)
               for e in outcome.effects) or Step.DELETING in (before.step, outcome.state.step)


# Global keywords ---------------------------------------------------------------------

def _help(t: _Turn) -> Outcome:
    key = "help_signed" if t.signature else "help"
    return Outcome(t.state, (Reply(Phrase(key), t.state.options),))


def _status(t: _Turn) -> Outcome:
    said: list[Phrase] = []
    for sig in t.ctx.supporter.signatures:
        petition = t.ctx.petitions.get(sig.petition)
        said.append(Phrase("status_signature", {
            "title": petition.title if petition else sig.petition, "number": sig.number,
            "date": sig.signed_at.strftime("%-d %b %Y"), "channel": _channel_name(sig.channel),
            "name": sig.name, "place": _place(sig.postcode, sig.country)}))
        subscribed = "yes" if sig.petition in t.ctx.supporter.subscribed else "no"
        said.append(Phrase("status_updates", {"updates": subscribed}))
    for voice in t.ctx.supporter.voices:
        text = voice.text
        if t.inbound.channel == Channel.SMS and len(text) > STATUS_VOICE:  # 3 segments
            text = text[:STATUS_VOICE - 3].rstrip() + "..."
        said.append(Phrase("status_voice", {"text": text, "voice_state": Phrase(
            "voice_pending" if voice.status == "pending" else
            "voice_published" if voice.status == "approved" and voice.publish else
            "voice_private")}))
    if t.ctx.inbox_messages:
        said.append(Phrase("status_inbox", {"count": t.ctx.inbox_messages}))
    if t.state.name:
        said.append(Phrase("status_in_progress", {"name": t.state.name}))
    if not said:
        return Outcome(t.state, (Reply(Phrase("status_nothing"), t.state.options),))
    return Outcome(t.state, (Reply(Phrase("status", {"details": tuple(said)}),
                                   t.state.options),))


def _delete(t: _Turn) -> Outcome:
    state = _enter(t, Step.DELETING, resume=_where(t), petition=t.petition.slug)
    return Outcome(state, (Reply(Phrase("delete_confirm"), state.options),))


def _person(t: _Turn) -> Outcome:
    """PERSON: their next message is for someone at the charity; then back where they were."""
    state = _enter(t, Step.PERSON, resume=_where(t), petition=t.petition.slug)
    return Outcome(state, (Reply(Phrase("ask_person")),))


def _where(t: _Turn) -> Step:
    """The step to come back to after an aside (DELETE's question, a message for a person)."""
    if t.state.step in (Step.DELETING, Step.PERSON):
        return t.state.resume
    return Step.MENU if t.state.step == Step.NEW else t.state.step


def _restart(t: _Turn) -> Outcome:
    return _greet(replace(t, state=State(petition=t.state.petition, referral=t.state.referral)))


def _resume(t: _Turn) -> Outcome:
    """START after STOP: one reply, that they are answered again, and where they are."""
    words = t.text.split()
    greeting = _open(t, words[1]) if len(words) == 2 else _greet(t)
    first, *rest = greeting.replies
    started = Reply(lines(Phrase("started"), first.phrase), first.options)
    return Outcome(greeting.state, (started, *rest), (OptIn(),))


def _signpost(t: _Turn) -> Outcome:
    """Words that suggest distress: where to find help now, and a person reads them. A
    signing in progress is kept; a voice is not asked to be published."""
    words = _kept_words(t)
    effects: tuple[Effect, ...] = (ForAPerson(words, flagged=True),)
    if t.state.step in (Step.VOICE, Step.VOICE_CONSENT):
        said = valid_voice(t.inbound.text) if t.state.step == Step.VOICE else None
        if said is not None:  # the voice queue shows it flagged too, never to be published
            effects = (SaveVoice(t.petition.slug, said, publish=False, flagged=True), *effects)
        state = _enter(t, Step.SIGNED, voice="")
    elif t.state.step == Step.PERSON:
        state = _enter(t, t.state.resume)
    else:
        state = t.state
    told = None if t.ctx.inbox_told else _inbox_told(t)
    return Outcome(state, (Reply(lines(Phrase("signpost"), told), state.options),), effects)


GLOBALS: dict[str, Callable[[_Turn], Outcome]] = {
    "HELP": _help, "STATUS": _status, "DELETE": _delete, "RESTART": _restart, "START": _restart,
    "UNSTOP": _restart, "PERSON": _person,
}
# What a first message may ask for at once (a poster says "Text SIGN to ..."); any other
# first message gets the greeting.
FIRST_WORDS = frozenset({"SIGN", "MORE", "INFO"})
# Steps that take the supporter's own words: a keyword there works alone, not as a first word.
FREE_TEXT = frozenset({Step.VOICE, Step.PERSON})


# What each choice says -----------------------------------------------------------------

def _shown(t: _Turn, s: State) -> State:
    """`s`, remembering the consent version of the wording they are about to read."""
    return replace(s, consent_version=t.ctx.privacy_version)


def _seen(t: _Turn) -> str:
    """The consent version of the wording they answered (the current one for a state
    saved before versions were remembered)."""
    return t.state.consent_version or t.ctx.privacy_version


def _ask_consent(t: _Turn, s: State) -> Outcome:
    s = _shown(t, s)
    return Outcome(s, (Reply(Phrase("consent", {"decision_makers": t.petition.decision_makers}),
                             s.options),))


def _consent_given(t: _Turn, s: State) -> Outcome:
    grant = GrantConsent(Purpose.SIGN, t.petition.slug, _seen(t))
    return Outcome(s, (Reply(Phrase("ask_name")),), (grant,))


def _consent_declined(t: _Turn, s: State) -> Outcome:
    # "Nothing has been stored": drop details left from an earlier try.
    state = _start_over(s)
    return Outcome(state, (Reply(Phrase("consent_declined"), state.options),))


def _ask_country(t: _Turn, s: State) -> Outcome:
    return Outcome(s, (Reply(Phrase("ask_country")),))


def _closed(t: _Turn, s: State) -> Outcome:
    """SIGN on a petition that has closed: said so, with where it ended."""
    return Outcome(s, (Reply(_closed_phrase(t.petition), s.options),))


def _closed_phrase(petition: PetitionView) -> Phrase:
    assert petition.closed is not None
    return Phrase("petition_closed", {"closed": f"{petition.closed.day} {petition.closed:%B %Y}",
                                      "count": _count(petition.total)})


def _sign(t: _Turn, s: State) -> Outcome:
    if t.petition.closed is not None:  # it closed while they were signing
        return _closed(t, _start_over(_enter(t, Step.MENU)))
    details = t.state
    nation = nation_of(details.postcode) if details.postcode else Nation.OUTSIDE_UK
    sign = Sign(t.petition.slug, details.name, details.postcode, details.country, nation,
                details.referral)
    state = _shown(t, _start_over(s))  # the thanks ask about updates
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
        GrantConsent(Purpose.UPDATES, slug, _seen(t)), Subscribe(slug)))


def _no_updates(t: _Turn, s: State) -> Outcome:
    return Outcome(s, (Reply(Phrase("updates_no"), s.options),))


def _ask_updates(t: _Turn, s: State) -> Outcome:
    s = _shown(t, s)
    return Outcome(s, (Reply(Phrase("ask_updates"), s.options),))


def _ask_voice(t: _Turn, s: State) -> Outcome:
    state = replace(s, voice="")
    return Outcome(state, (Reply(Phrase("ask_voice", {"max_length": MAX_VOICE})),))


def _erase(t: _Turn, s: State) -> Outcome:
    if not t.state.options:  # the question never reached them (replies were paused)
        return _delete(t)
    return Outcome(State(), (Reply(Phrase("deleted")),), (Erase(),))


def _keep(t: _Turn, s: State) -> Outcome:
    resumed = _enter(t, t.state.resume)  # back to the step DELETE interrupted, asked again
    return Outcome(resumed, (Reply(lines(Phrase("delete_kept"), _question(t, resumed)),
                                   resumed.options),))


def _voice_not_kept(t: _Turn, s: State) -> Outcome:
    back = replace(s, voice="")
    return Outcome(back, (Reply(Phrase("voice_not_kept"), back.options),))


def _publish_voice(t: _Turn, s: State) -> Outcome:
    back = replace(s, voice="")
    slug = t.petition.slug
    return Outcome(back, (Reply(Phrase("voice_thanks"), back.options),), (
        GrantConsent(Purpose.PUBLISH_VOICE, slug, _seen(t)),
        SaveVoice(slug, t.state.voice, publish=True)))


def _more(t: _Turn, s: State) -> Outcome:
    """The issue, page by page, with the step's own choices in their usual order (so their
    numbers stay put); MORE after the last page starts again."""
    pages = _pages(t)
    index = s.page % len(pages)
    last = index == len(pages) - 1
    offered = _options(s.step, t)  # MORE too on the last page (it starts again): the
    # numbers of INFO and HELP never move
    state = replace(s, page=index + 1, options=offered)
    key = "page_whole" if len(pages) == 1 else "page_last" if last else "page"
    phrase = Phrase(key, {"page_text": pages[index], "page": index + 1, "pages": len(pages)})
    return Outcome(state, (Reply(phrase, offered),))


def _pages(t: _Turn) -> tuple[str, ...]:
    return issue_pages(t.petition.issue, t.inbound.channel, t.state.step)


def issue_pages(issue: str, channel: Channel, step: Step = Step.MENU) -> tuple[str, ...]:
    """The issue's pages (MORE): on SMS as full as three GSM-7 segments allow with the
    page's number and every choice the step may offer; elsewhere up to LONG_PAGE characters,
    one screen. A page ends at a sentence's end when that leaves it at least half full."""
    if channel != Channel.SMS:
        return paginate(issue, lambda page: len(page) <= LONG_PAGE, at_least=LONG_PAGE // 2)
    step = step if step == Step.SIGNED else Step.MENU
    room = to_gsm7(DEFAULTS["page_last"].format(page_text="", page=99, pages=99)
                   + choices_line(_offered(step)))

    def fits(page: str) -> bool:
        return segments(to_gsm7(page) + room) <= SMS_SEGMENTS

    return paginate(issue, fits, at_least=(SMS_SEGMENTS * SMS_PART - len(room)) // 2)


def _offered(step: Step) -> tuple[str, ...]:
    """Every choice `step` can show, whoever asks."""
    return tuple(c.keyword for c in STEPS[step].choices if c.shown)


def _info(t: _Turn, s: State) -> Outcome:
    p = t.petition
    parts = [f"{_count(count)} on {source}" for source, count in p.external]
    breakdown = " + ".join([*parts, f"{_count(p.here)} here"])
    if p.external:
        breakdown += f" = {_count(p.total)}"
    step = s.step if s.step in (Step.MENU, Step.SIGNED) else Step.MENU
    state = replace(s, options=_options(step, t))
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
    greeting = Phrase("greeting", {"organiser": p.organiser, "title": p.title,
                                   "summary": p.summary, "count": _count(p.total)})
    if p.closed is not None:  # they may still read it, and learn it has closed
        greeting = lines(greeting, _closed_phrase(p))
    replies = [Reply(greeting, state.options)]
    if t.ctx.offer_phone_link and t.state.step == Step.NEW:
        replies.append(Reply(Phrase("offer_link"), ("SHARE_PHONE",)))
    return Outcome(state, tuple(replies))


def _name(t: _Turn) -> Outcome:
    cleaned = valid_name(t.text)
    if cleaned is None:
        if for_a_person(t.text, questions_only=True):
            return _for_a_person(t)
        return Outcome(t.state, (Reply(Phrase("name_invalid", {"max_length": MAX_NAME})),))
    state = _enter(t, Step.POSTCODE, name=cleaned)
    return Outcome(state, (Reply(Phrase("ask_postcode", {"name": cleaned}), state.options),))


def _postcode(t: _Turn) -> Outcome:
    canonical = normalise_postcode(t.text)
    if canonical is None:
        if for_a_person(t.text, questions_only=True):
            return _for_a_person(t)
        return Outcome(t.state, (Reply(Phrase("postcode_invalid"), t.state.options),))
    return _review(t, postcode=canonical, country="")


def _country(t: _Turn) -> Outcome:
    cleaned = valid_country(t.text)
    if cleaned is None:
        if for_a_person(t.text, questions_only=True):
            return _for_a_person(t)
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
    state = _shown(t, _enter(t, Step.VOICE_CONSENT, voice=said))
    return Outcome(state, (Reply(Phrase("ask_publish"), state.options),))


def _after_signing(t: _Turn) -> Outcome:
    """After signing, any words that are no keyword are for a person; a hello gets where
    they stand."""
    if for_a_person(t.text, anything=True):
        state = t.state if t.state.step == Step.SIGNED else _enter(t, Step.SIGNED)
        return _for_a_person(t, state)
    return _welcome_back(t)


def _to_person(t: _Turn) -> Outcome:
    """The message PERSON asked for: kept for a person, then back where they were. One of
    that step's keywords alone means they changed their mind: it is answered there."""
    back = _enter(t, t.state.resume)
    if len(t.text.split()) == 1 and t.keyword in {c.keyword for c in STEPS[back.step].choices}:
        return _answer(replace(t, state=back))
    if not t.text or t.text.isdecimal():
        return Outcome(t.state, (Reply(Phrase("ask_person")),))
    return _for_a_person(t, back)


def _unusable(t: _Turn) -> Outcome:
    """Words the step cannot use as a keyword: a wish the step offers in other words ("I want
    to sign", "yes please"), for a person if they read as a message, else a re-prompt."""
    wanted = _wanted(t)
    if wanted:
        return _answer(replace(t, keyword=wanted))
    if for_a_person(t.text):
        return _for_a_person(t)
    return _reprompt(t)


def _wanted(t: _Turn) -> str:
    """The step's keyword that words mean, if they plainly mean one: SIGN (YES where the
    step asks whether to sign), or YES."""
    wish = wants(t.text)
    offered = {c.keyword for c in STEPS[t.state.step].choices}
    if wish == "SIGN" and "SIGN" not in offered and t.state.step in (Step.CONSENT,
                                                                     Step.REVIEW):
        wish = "YES"
    return wish if wish in offered else ""


def _first(t: _Turn) -> Outcome:
    """A first message: the greeting; a first message meant for a person (a question, a
    story) is also kept for one, and one that plainly asks to sign signs."""
    if _wanted(replace(t, state=replace(t.state, step=Step.MENU))) == "SIGN":
        return _answer(replace(t, keyword="SIGN"))
    greeting = _greet(t)
    words = len(t.text.split())
    if t.signature or not for_a_person(t.text) or not (
            ("?" in t.text and words >= FIRST_QUESTION) or words >= FIRST_STORY):
        return greeting  # ("What is this?", "Hi, I saw your poster": the greeting answers)
    told = Reply(Phrase("inbox_noted") if t.ctx.inbox_told else _inbox_told(t))
    return replace(greeting, replies=(told, *greeting.replies),
                   effects=(*greeting.effects, ForAPerson(_kept_words(t), flagged=False)))


def _for_a_person(t: _Turn, state: State | None = None) -> Outcome:
    """Keep the words for the staff inbox; say, once per open inbox conversation, who reads
    them and when to expect an answer; ask the step's question again."""
    state = state or t.state
    lead = Phrase("inbox_noted") if t.ctx.inbox_told else _inbox_told(t)
    reply = Reply(lines(lead, _question(t, state)), state.options)
    return Outcome(state, (reply,), (ForAPerson(_kept_words(t), flagged=False),))


def _inbox_told(t: _Turn) -> Phrase:
    """Who reads these messages, and when to expect an answer."""
    return Phrase("inbox_told", {"answer": t.ctx.inbox_answer or Phrase("inbox_soon")})


def _kept_words(t: _Turn) -> str:
    """The words as they were sent (lines kept), for a person to read."""
    return storable(t.inbound.text).strip()[:MAX_KEPT]


def _question(t: _Turn, state: State) -> Phrase | None:
    """What the supporter's step asks, to ask it again (None: its choices say it all)."""
    question = STEPS[state.step].question
    return question(replace(t, state=state), state) if question else None


def _reprompt(t: _Turn) -> Outcome:
    """Unusable input: say so, repeat the choices, change nothing."""
    if t.state.options:
        return Outcome(t.state, (Reply(Phrase("not_understood_choose"), t.state.options),))
    return Outcome(t.state, (Reply(Phrase("not_understood")),))


# When a choice is offered ----------------------------------------------------------------

def _may_sign(t: _Turn) -> bool:
    return t.signature is None and t.petition.closed is None


def _closed_unsigned(t: _Turn) -> bool:
    return t.signature is None and t.petition.closed is not None


def _has_signed(t: _Turn) -> bool:
    return t.signature is not None


def _unsubscribed(t: _Turn) -> bool:
    return t.petition.slug not in t.ctx.supporter.subscribed


def _one_word(t: _Turn) -> bool:
    return len(t.text.split()) == 1


def _asks(key: str, **params: object) -> Callable[[_Turn, State], Phrase]:
    """A step's question that is always the same text."""
    return lambda t, s: Phrase(key, params)


def _review_question(t: _Turn, s: State) -> Phrase:
    return Phrase("review", {"name": s.name, "place": _place(s.postcode, s.country)})


# The steps -------------------------------------------------------------------------------

STEPS: dict[Step, Rule] = {
    Step.NEW: Rule((), otherwise=_first),
    # MORE, INFO and HELP keep their numbers (2, 3, 4) on the greeting, the pages and after
    # signing; the step's first choice is what it is for.
    Step.MENU: Rule((
        Choice("SIGN", Step.CONSENT, _ask_consent, when=_may_sign),
        Choice("SIGN", None, _closed, when=_closed_unsigned, shown=False),
        Choice("STATUS", when=_has_signed),
        Choice("MORE", None, _more),
        Choice("INFO", None, _info),
        Choice("HELP"),
    ), otherwise=_unusable),
    Step.CONSENT: Rule((
        Choice("YES", Step.NAME, _consent_given),
        Choice("NO", Step.MENU, _consent_declined),
    ), otherwise=_unusable, question=_asks("consent_again")),
    Step.NAME: Rule((), otherwise=_name, question=_asks("name_again")),
    Step.POSTCODE: Rule((
        Choice("NONE", Step.COUNTRY, _ask_country),
    ), otherwise=_postcode, question=_asks("postcode_again")),
    Step.COUNTRY: Rule((), otherwise=_country, question=_asks("ask_country")),
    Step.REVIEW: Rule((
        Choice("YES", Step.UPDATES, _sign),
        Choice("EDIT", Step.NAME, _edit),
        Choice("NO", Step.MENU, _cancel_review, shown=False),
    ), otherwise=_unusable, question=_review_question),
    Step.UPDATES: Rule((
        Choice("YES", Step.SIGNED, _subscribe),
        Choice("NO", Step.SIGNED, _no_updates),
    ), otherwise=_unusable, question=_asks("ask_updates")),
    Step.SIGNED: Rule((
        Choice("STATUS"),
        Choice("MORE", None, _more),
        Choice("INFO", None, _info),
        Choice("HELP"),
        Choice("VOICE", Step.VOICE, _ask_voice),
        Choice("UPDATES", Step.UPDATES, _ask_updates, when=_unsubscribed),
    ), otherwise=_after_signing),
    Step.DELETING: Rule((
        Choice("YES", Step.NEW, _erase),
        Choice("NO", None, _keep),  # back to the step DELETE interrupted
    ), otherwise=_unusable, question=_asks("delete_confirm")),
    Step.VOICE: Rule((
        Choice("NO", Step.SIGNED, _voice_not_kept, when=_one_word, shown=False),
    ), otherwise=_voice, question=_asks("voice_again", max_length=MAX_VOICE)),
    Step.VOICE_CONSENT: Rule((
        Choice("YES", Step.SIGNED, _publish_voice),
        Choice("NO", Step.SIGNED, _voice_not_kept),
    ), otherwise=_unusable, question=_asks("ask_publish")),
    Step.PERSON: Rule((), otherwise=_to_person, question=_asks("ask_person")),
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
