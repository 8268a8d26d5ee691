"""Properties of the conversation that hold whatever a supporter sends, in any order, on
any channel: no crash, no signature without consent, silence after STOP, one signature per
petition, and a state that always makes sense."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.core.conversation import (
    MAX_KEPT,
    NO_WORDS,
    RESERVED,
    START_WORDS,
    YES_WORDS,
    Channel,
    Effect,
    Erase,
    ForAPerson,
    GrantConsent,
    OptIn,
    OptOut,
    Purpose,
    Sign,
    State,
    Step,
    clean,
)
from bot.core.gsm import is_gsm7
from bot.core.render import SHARE_PHONE
from tests.unit.transcript import TO_STEP, Chat, Said, two_petition_config

CONFIG = two_petition_config()
SLUGS = {p.slug for p in CONFIG.petitions}
REPROMPTS = {"not_understood", "not_understood_choose", "name_invalid", "postcode_invalid",
             "country_invalid", "contact_refused"}
LEAVE_STATE_ALONE = REPROMPTS | {"help", "status", "status_nothing"}

KEYWORDS = st.sampled_from([
    *sorted(RESERVED | YES_WORDS | NO_WORDS),
    "sign", "Yes.", "yes!", "no.", "stop please", "Stop.", "/start", "/start SIRT_ref42",
    "START SIRT_ref42", "START SCANS", "SIGN SIRT", "SIGN SCANS", "SIGN NOPE", "sign me up",
    "START x_y", "/stop", "UPDATES", "UNSTOP", "I AGREE",
])
NUMBERS = st.integers(-1, 12).map(str) | st.sampled_from(["²", "⑴", "٣", "01", "1 ", " 2"])
NAMES = st.sampled_from([
    "Amira Hussain", "Zoë Łukasz-Ó'Brien", "李小龍", "=cmd()", "+44", "@x", "A" * 80, "A" * 81,
    "😀", "Jo", "O’Brien", "Tom & Jerry", "<b>&", "Sign Smith", "Mary Start",
]) | st.text(st.characters(categories=["L", "Zs", "Mn"]), min_size=1, max_size=90)
POSTCODES = st.sampled_from([
    "SW1A 1AA", "sw1a1aa", " e h 1  1 y z ", "CF10 1EP", "BT1 5GS", "BFPO 123", "GIR 0AA",
    "JE2 3AA", "TD15 1AA", "SW1A", "🏠", "EH1😀1YZ", "NONE", "none",
])
COUNTRIES = st.sampled_from([
    "France", "UK", "u.k.", "Trinidad & Tobago", "Côte d'Ivoire", "123", "🇫🇷", "Wales",
    "Bosnia and Herzegovina", "N", "=1+1",
])
UNICODE = st.text(max_size=40)
LONG = st.builds(lambda c, n: c * n, st.characters(), st.integers(100, 6000)) | st.builds(
    lambda t, n: t * n, st.text(min_size=1, max_size=5), st.integers(50, 2000))
MESSAGE = st.one_of(KEYWORDS, KEYWORDS, NUMBERS, NAMES, POSTCODES, COUNTRIES, UNICODE, LONG)
OPT_OUT = st.sampled_from(["", "", "", "", "", "", "", "", "STOP", "START"])
CONTACT = st.sampled_from(["", "", "", "", "", "", "", "", "own", "other"])  # Telegram only
SENT = st.tuples(MESSAGE, OPT_OUT, CONTACT)

# Whole signings, so random noise lands in the middle of real conversations.
HAPPY = [
    ["Hi", "SIGN", "YES", "Amira Hussain", "SW1A 1AA", "YES", "YES"],
    ["/start SIRT_ref42", "1", "1", "Zoë Łukasz-Ó'Brien", "NONE", "France", "1", "2"],
    ["SIGN SCANS", "SIGN", "Yes.", "Priya Shah", "eh1 1yz", "EDIT", "Priya Shah", "BT1 5GS",
     "yes", "no"],
]
SEGMENT = st.one_of(
    st.sampled_from(HAPPY).map(lambda msgs: [(m, "", "") for m in msgs]),
    st.lists(SENT, min_size=1, max_size=4),
)
CONVERSATION = st.lists(SEGMENT, min_size=1, max_size=8).map(
    lambda segments: [sent for segment in segments for sent in segment])


@dataclass
class Ledger:
    """What the conversation has agreed to so far, kept independently of the bot."""

    consented: set[str] = field(default_factory=set)  # sign consent since the last STOP/erase
    signed: set[str] = field(default_factory=set)      # signed since the last erase

    def record(self, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            match effect:
                case GrantConsent(Purpose.SIGN, slug):
                    self.consented.add(slug)
                case Sign(slug):
                    assert slug in self.consented, f"Sign for {slug} without consent"
                    assert slug not in self.signed, f"second Sign for {slug}"
                    self.signed.add(slug)
                    event("signed")
                case OptOut():
                    self.consented.clear()
                case Erase():
                    self.consented.clear()
                    self.signed.clear()


def is_start(text: str, opt_out: str) -> bool:
    if opt_out:  # the provider's own keyword match wins over the words
        return opt_out == "START"
    words = clean(text, limit=1600).split()
    first = words[0].lstrip("/").upper().strip(".!,?") if words else ""
    return first in START_WORDS


def assert_valid(state: State) -> None:
    assert isinstance(state.step, Step) and isinstance(state.resume, Step)
    assert state.petition in {"", *SLUGS}
    assert set(state.options) <= RESERVED, state.options
    if state.step == Step.REVIEW:
        assert state.name and bool(state.postcode) != bool(state.country), state
    if state.step in (Step.POSTCODE, Step.COUNTRY):
        assert state.name, state
    if state.step in (Step.NAME, Step.POSTCODE, Step.COUNTRY, Step.REVIEW):
        assert state.petition in SLUGS


def assert_rendered(said: Said, channel: Channel) -> None:
    for reply, rendered in zip(said.outcome.replies, said.rendered, strict=True):
        if channel == Channel.TELEGRAM:
            assert set(reply.options) <= RESERVED | {SHARE_PHONE}
            assert [data for _, data in rendered.buttons] == [
                o for o in reply.options if o != SHARE_PHONE]
        else:
            assert set(reply.options) <= RESERVED
        if channel == Channel.SMS:
            assert is_gsm7(rendered.text)


def assert_numbers_mean_what_was_shown(said: Said, state: State) -> None:
    """The choices a reply showed last are the ones its numbers answer next time."""
    shown = [r.options for r in said.outcome.replies if r.options and r.options != (SHARE_PHONE,)]
    if shown:
        assert shown[-1] == state.options, (said.sent, said.keys, shown[-1], state.options)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channel=st.sampled_from(list(Channel)), conversation=CONVERSATION)
def test_whatever_anyone_sends_the_conversation_keeps_its_promises(
        channel: Channel, conversation: list[tuple[str, str, str]]) -> None:
    shell = Chat(channel, config=CONFIG)
    ledger = Ledger()
    for text, opt_out, contact in conversation:
        before, opted_out = shell.state, shell.supporter.opted_out
        contact = contact if channel == Channel.TELEGRAM else ""
        said = shell.send(text, opt_out=opt_out, contact=contact)
        if opted_out:
            if is_start(text, opt_out):
                assert said.effects == (OptIn(),)
            else:
                assert said.outcome.replies == () and said.effects == ()
                assert said.outcome.state == before
        elif said.effects and isinstance(said.effects[0], OptOut):
            assert said.effects == (OptOut(),) and said.keys == ("stopped",)
            assert said.outcome.state == State(petition=before.petition, referral=before.referral)
        ledger.record(said.effects)
        if said.keys and set(said.keys) <= LEAVE_STATE_ALONE:
            assert said.outcome.state == before, f"{text!r} re-prompted but changed the state"
            assert said.effects == ()
        assert_valid(shell.state)
        assert_rendered(said, channel)
        assert_numbers_mean_what_was_shown(said, shell.state)
        for effect in said.effects:
            if isinstance(effect, ForAPerson):
                assert 0 < len(effect.text) <= MAX_KEPT
    # What the core was told about the supporter matches what it asked for.
    assert {s.petition for s in shell.supporter.signatures} == ledger.signed


# Deleting from the middle of a signing is the harder case for "rejected input changes
# nothing", so the property starts DELETING there.
REACH: dict[Step, list[str]] = {**TO_STEP, Step.DELETING: ["Hi", "SIGN", "YES", "DELETE"]}


@settings(max_examples=600, deadline=None)
@given(step=st.sampled_from(list(Step)), channel=st.sampled_from(list(Channel)), text=MESSAGE)
def test_a_message_a_step_rejects_leaves_the_state_exactly_as_it_was(
        step: Step, channel: Channel, text: str) -> None:
    shell = Chat(channel, config=CONFIG)
    shell.sends(REACH[step])
    assert shell.state.step == step
    before = shell.state
    said = shell.send(text)
    assert said.outcome.replies, "a supporter who has not said STOP always gets an answer"
    assert_valid(said.outcome.state)
    if set(said.keys) <= LEAVE_STATE_ALONE:
        event(f"rejected at {step}")
        assert said.outcome.state == before and said.effects == ()
