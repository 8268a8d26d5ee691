"""The conversation as a new supporter reads it (issue #14): each point a supporter found
wrong, as a transcript on the real shell; and the core's side of the staff inbox (words
kept for a person, the PERSON keyword, distress wherever it arrives)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.core import conversation as core
from bot.core.conversation import (
    Channel,
    ForAPerson,
    Inbound,
    SaveVoice,
    SignatureView,
    State,
    Step,
    SupporterView,
    VoiceView,
)
from bot.core.gsm import is_gsm7, segments
from tests.unit.transcript import TO_STEP, Chat, play, signed_up

GREETING = "Hello from PLANETS Cancer Charity"
CONSENT = "You must be 16 or over"
ASK_NAME = "What is your full name?"
TOLD = "Someone from PLANETS reads these messages"
NOTED = "we have passed this on"
SIGNPOST = "Samaritans"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(step: Step, channel: Channel = Channel.SMS) -> Chat:
    chat = Chat(channel)
    chat.sends(TO_STEP[step])
    assert chat.state.step == step
    return chat


def kept(chat: Chat) -> list[ForAPerson]:
    return [e for e in chat.effects if isinstance(e, ForAPerson)]


# Numbers mean what the supporter last saw next to them ------------------------------------

def test_bea_types_2_to_read_on_and_every_page_keeps_2_for_more() -> None:
    bea = Chat(Channel.SMS)
    pages = play(bea, [
        ("hi", "Reply 1 SIGN, 2 MORE, 3 INFO or 4 HELP", Step.MENU),
        ("2", "(Page 1 of", Step.MENU),
        ("2", "(Page 2 of", Step.MENU),
    ])
    assert "Reply 1 SIGN, 2 MORE, 3 INFO or 4 HELP" in pages[1].text
    assert "Reply 1 SIGN, 2 MORE, 3 INFO or 4 HELP" in pages[2].text
    assert bea.effects == [] and bea.state.step == Step.MENU


def test_bea_sees_the_same_numbers_she_can_answer_with_whatever_she_does() -> None:
    bea = Chat(Channel.WHATSAPP)
    for text in ["hi", "MORE", "MORE", "MORE", "MORE", "INFO", "HELP", "STATUS", "SIGN", "NO",
                 "MORE", "SIGN", "YES", "Bea Smith", "SW1A 1AA", "YES", "NO", "MORE", "INFO",
                 "VOICE", "NO", "DELETE", "NO"]:
        said = bea.send(text)
        shown = [r.options for r in said.outcome.replies if r.options]
        if shown:
            assert shown[-1] == bea.state.options, (text, said.text)


def test_bea_signed_keeps_more_and_info_on_the_numbers_they_had() -> None:
    bea = signed_up(Chat(Channel.SMS), name="Bea Smith")
    said = bea.history[-1]
    assert "2 MORE, 3 INFO, 4 HELP" in said.text
    assert "2 MORE" in bea.send("MORE").text


# One instruction, said once -------------------------------------------------------------

def test_carl_is_told_how_to_answer_the_review_once() -> None:
    carl = at(Step.POSTCODE)
    review = carl.send("SW1A 1AA")
    assert "Reply 1 YES or 2 EDIT" in review.text
    assert review.text.count("YES") == 1 and review.text.count("EDIT") == 1
    telegram = at(Step.POSTCODE, Channel.TELEGRAM).send("SW1A 1AA")
    assert "YES" not in telegram.text and "EDIT" not in telegram.text
    assert [data for _, data in telegram.rendered[0].buttons] == ["YES", "EDIT"]


@pytest.mark.parametrize("step", [Step.CONSENT, Step.REVIEW, Step.DELETING, Step.VOICE_CONSENT,
                                  Step.MENU])
def test_carl_never_reads_an_option_twice(step: Step) -> None:
    carl = at(step)
    said = carl.history[-1] if step != Step.DELETING else carl.send("DELETE")
    for option in said.outcome.replies[-1].options:
        assert said.text.count(f" {option}") <= 1, said.text


# DELETE, then NO -------------------------------------------------------------------------

@pytest.mark.parametrize(("step", "question"), [
    (Step.UPDATES, "Would you like updates"),
    (Step.REVIEW, "Please check what we will record"),
    (Step.NAME, "full name"),
    (Step.POSTCODE, "UK postcode"),
    (Step.CONSENT, "Would you still like to sign"),
])
def test_dana_keeps_her_data_and_is_asked_again_where_she_was(step: Step, question: str) -> None:
    dana = at(step)
    before = dana.state
    play(dana, [("DELETE", "Shall we delete", Step.DELETING),
                ("NO", "Nothing has been deleted", step)])
    kept_said = dana.history[-1]
    assert question in kept_said.text
    assert len(kept_said.rendered) == 1
    assert replace(dana.state, resume=before.resume) == before


# START -------------------------------------------------------------------------------------

@pytest.mark.parametrize("signed", [False, True])
def test_emil_starts_again_and_gets_one_reply_promising_no_updates(signed: bool) -> None:
    emil = signed_up(Chat(Channel.SMS), name="Emil Berg") if signed else at(Step.MENU)
    emil.send("STOP")
    start = emil.send("START")
    assert len(start.rendered) == 1
    assert start.text.count("Welcome back") <= 1
    assert "hear from" not in start.words and "updates" not in start.words.lower()
    assert ("You signed" if signed else GREETING) in start.text


# HELP ----------------------------------------------------------------------------------------

def test_fay_asks_for_help_after_signing_and_hears_of_voice_and_person() -> None:
    fay = signed_up(Chat(Channel.SMS), name="Fay Lowe")
    help_ = fay.send("HELP").text
    assert "SIGN to sign" not in help_
    assert "VOICE" in help_ and "PERSON" in help_
    before = at(Step.MENU).send("HELP").text
    assert "SIGN to sign" in before and "PERSON" in before


# STATUS ----------------------------------------------------------------------------------------

def test_gil_reads_his_signature_number_as_a_number_here_not_a_rank() -> None:
    gil = signed_up(Chat(Channel.SMS), name="Gil Hart")
    thanks = gil.history[-2].text
    assert "Your signature is number 1 here" in thanks and "supporter number" not in thanks
    status = gil.send("STATUS").text
    assert "signature no. 1 here" in status


def test_gil_sees_the_voice_he_left_and_his_messages_to_the_team_in_status() -> None:
    signature = SignatureView("sirt", 4, NOW, Channel.SMS, "Gil Hart", "SW1A 1AA", "")
    facts = SupporterView(signatures=(signature,), voices=(
        VoiceView("sirt", "It gave my mum more time", "pending", publish=True),))
    ctx = _context(supporter=facts, inbox_messages=2)
    out = core.handle(State(step=Step.SIGNED, petition="sirt"),
                      Inbound(Channel.SMS, "STATUS"), ctx, NOW)
    text = _words(out)
    assert '"It gave my mum more time"' in text and "not read it yet" in text
    assert "Messages you have sent to our team: 2" in text
    nothing = core.handle(State(step=Step.SIGNED, petition="sirt"),
                          Inbound(Channel.SMS, "STATUS"), _context(supporter=facts), NOW)
    assert "Messages you have sent" not in _words(nothing)


# VOICE -------------------------------------------------------------------------------------------

def test_hana_is_asked_not_to_name_anyone_and_told_the_team_reads_first() -> None:
    hana = at(Step.SIGNED)
    ask = hana.send("VOICE").text
    assert "do not name or identify" in ask and "before anyone else sees it" in ask
    assert "health" not in ask


# A first message that is a keyword ---------------------------------------------------------------

@pytest.mark.parametrize(("first", "fragment", "step"), [
    ("SIGN", CONSENT, Step.CONSENT),
    ("sign", CONSENT, Step.CONSENT),
    ("INFO", "To: NHS England", Step.MENU),
    ("MORE", "(Page 1 of", Step.MENU),
])
def test_ivy_texts_the_word_on_the_poster_and_it_happens(first: str, fragment: str,
                                                         step: Step) -> None:
    ivy = Chat(Channel.SMS)
    play(ivy, [(first, fragment, step)])
    assert ivy.state.petition == "sirt"


def test_ivy_who_signed_elsewhere_texts_sign_first_and_is_thanked() -> None:
    sms = signed_up(Chat(Channel.SMS), name="Ivy Chen")
    play(sms.on(Channel.WHATSAPP), [("SIGN", "You have already signed", Step.SIGNED)])


# The name step ----------------------------------------------------------------------------------

@pytest.mark.parametrize("not_a_name", ["yes please", "Yes", "sign", "SIGN ME UP", "ok thanks",
                                        "😀", "👍👍", "please", "help me"])
def test_jack_is_told_what_a_name_looks_like(not_a_name: str) -> None:
    jack = at(Step.NAME)
    before = jack.state
    said = jack.send(not_a_name)
    if said.keys == ("help",):
        return  # HELP is a keyword at every step
    assert "Please send your full name, e.g. Sam Jones" in said.text
    assert jack.state == before and said.effects == ()


# Pages ----------------------------------------------------------------------------------------

def test_kim_reads_the_issue_in_pages_that_fill_three_text_messages() -> None:
    kim = Chat(Channel.SMS)
    kim.send("hi")
    issue = " ".join(kim.config.petition("sirt").issue.split())
    said = [kim.send("MORE")]
    while "the end" not in said[-1].text:
        said.append(kim.send("MORE"))
    assert 2 <= len(said) <= 3
    for page in said:
        assert is_gsm7(page.text) and segments(page.text) <= 3
        assert len(page.text) > 300 or page is said[-1]
        body = page.words.rsplit("\n(Page", 1)[0]
        assert body[-1] in ".!?", body  # a page ends at the end of a sentence
    read = " ".join(" ".join(p.words.rsplit("\n(Page", 1)[0].split()) for p in said)
    assert read == issue


@pytest.mark.parametrize("channel", [Channel.TELEGRAM, Channel.WHATSAPP])
def test_kim_on_telegram_reads_one_page_without_a_page_number(channel: Channel) -> None:
    kim = Chat(channel)
    said = play(kim, [("hi", GREETING, Step.MENU),
                      ("MORE", "Sign the petition to support our call", Step.MENU)])[-1]
    assert "Page" not in said.text and "the end" not in said.text
    # MORE stays (it shows the page again), so INFO and HELP keep their numbers.
    assert said.outcome.replies[-1].options == ("SIGN", "MORE", "INFO", "HELP")


# The staff inbox -------------------------------------------------------------------------------

def test_lena_asks_a_question_after_signing_and_it_is_kept_for_a_person() -> None:
    lena = signed_up(Chat(Channel.SMS), name="Lena Park")
    question = "Will my mum be able to get SIRT at her hospital in Leeds?"
    said = play(lena, [(question, TOLD, Step.SIGNED)])[-1]
    assert said.effects == (ForAPerson(question, flagged=False),)
    assert "Welcome back" not in said.text and "1 STATUS" in said.text


def test_lena_tells_a_long_story_and_it_reaches_the_inbox_whole() -> None:
    lena = signed_up(Chat(Channel.TELEGRAM), name="Lena Park")
    story = ("My mother was diagnosed three years ago. " * 40).strip()
    said = lena.send(story)
    assert said.effects == (ForAPerson(story, flagged=False),)
    assert TOLD in said.text


@pytest.mark.parametrize(("step", "text", "question"), [
    (Step.MENU, "thanks", None),
    (Step.MENU, "How many signatures do you need?", None),
    (Step.CONSENT, "Who at NHS England gets this?", "Would you still like to sign"),
    (Step.REVIEW, "Can I use my work address instead?", "Please check what we will record"),
    (Step.UPDATES, "How often would you send them?", "Would you like updates"),
    (Step.NAME, "Why do you need my name?", "send your full name"),
    (Step.POSTCODE, "Do you share my postcode with anyone?", "UK postcode"),
])
def test_mo_asks_mid_conversation_and_keeps_his_place(step: Step, text: str,
                                                      question: str | None) -> None:
    mo = at(step)
    before = mo.state
    said = play(mo, [(text, TOLD, step)])[-1]
    assert said.effects == (ForAPerson(text, flagged=False),)
    assert mo.state == before
    if question:
        assert question in said.text
    assert len(said.rendered) == 1


@pytest.mark.parametrize(("step", "text"), [
    (Step.MENU, "maybe"), (Step.CONSENT, "Dev Patel"), (Step.REVIEW, "hmm"),
    (Step.UPDATES, "whatever"), (Step.MENU, "hello?"), (Step.NEW, "What is this?"),
])
def test_mo_types_a_stray_word_that_is_no_message_for_a_person(step: Step, text: str) -> None:
    mo = at(step)
    said = mo.send(text)
    assert not kept(mo) and TOLD not in said.text


def test_nell_is_told_once_per_open_conversation() -> None:
    signature = SignatureView("sirt", 4, NOW, Channel.SMS, "Nell Ray", "SW1A 1AA", "")
    facts = SupporterView(signatures=(signature,))
    state = State(step=Step.SIGNED, petition="sirt", options=("STATUS", "MORE"))
    first = core.handle(state, Inbound(Channel.SMS, "Thank you so much for doing this"),
                        _context(supporter=facts, inbox_answer="within 2 working days"), NOW)
    assert TOLD in _words(first) and "within 2 working days" in _words(first)
    unset = core.handle(state, Inbound(Channel.SMS, "Thank you"), _context(supporter=facts), NOW)
    assert "will answer as soon as they can" in _words(unset)
    again = core.handle(state, Inbound(Channel.SMS, "And my sister signed too"),
                        _context(supporter=facts, inbox_told=True), NOW)
    assert TOLD not in _words(again) and NOTED in _words(again)
    assert again.effects == (ForAPerson("And my sister signed too", flagged=False),)


def test_olu_asks_for_a_person_and_is_back_where_he_was_after() -> None:
    olu = at(Step.POSTCODE)
    before = olu.state
    play(olu, [
        ("PERSON", "What would you like to say", Step.PERSON),
        ("My dad is in hospital, can someone call me?", TOLD, Step.POSTCODE),
    ])
    assert kept(olu) == [ForAPerson("My dad is in hospital, can someone call me?",
                                    flagged=False)]
    assert "UK postcode" in olu.history[-1].text
    assert replace(olu.state, resume=before.resume) == before
    play(olu, [("SW1A 1AA", "Please check", Step.REVIEW)])


@pytest.mark.parametrize("message", ["Help, my mum cannot get SIRT at her hospital",
                                     "Start of her treatment was delayed twice",
                                     "STATUS of her referral is unclear to us"])
def test_olu_writes_to_a_person_in_words_that_begin_with_a_keyword(message: str) -> None:
    olu = signed_up(Chat(Channel.WHATSAPP), name="Olu Ade")
    play(olu, [("PERSON", "What would you like to say", Step.PERSON),
               (message, TOLD, Step.SIGNED)])
    assert kept(olu) == [ForAPerson(message, flagged=False)]


def test_olu_asks_for_a_person_then_changes_his_mind() -> None:
    olu = signed_up(Chat(Channel.TELEGRAM), name="Olu Ade")
    play(olu, [("PERSON", "What would you like to say", Step.PERSON),
               ("MORE", "Sign the petition to support", Step.SIGNED)])
    assert kept(olu) == []
    play(olu, [("person", "What would you like to say", Step.PERSON),
               ("help", "PERSON", Step.PERSON),
               ("thanks, all good", TOLD, Step.SIGNED)])


@pytest.mark.parametrize("step", [Step.MENU, Step.CONSENT, Step.NAME, Step.REVIEW,
                                  Step.SIGNED, Step.NEW, Step.PERSON])
def test_pat_in_distress_is_signposted_at_once_wherever_he_is(step: Step) -> None:
    pat = at(step) if step != Step.PERSON else at(Step.MENU)
    if step == Step.PERSON:
        pat.send("PERSON")
    before = pat.state
    words = "I feel hopeless and can't go on"
    said = pat.send(words)
    assert SIGNPOST in said.text and "116 123" in said.text and TOLD in said.text
    assert said.effects == (ForAPerson(words, flagged=True),)
    after = pat.state
    if step == Step.PERSON:
        assert after.step == Step.MENU
    else:
        assert after == before  # a signing in progress is kept


def test_pat_in_distress_in_his_voice_is_flagged_for_a_person_too() -> None:
    pat = at(Step.VOICE)
    words = "Honestly I feel hopeless"
    said = play(pat, [(words, SIGNPOST, Step.SIGNED)])[-1]
    assert said.effects == (SaveVoice("sirt", words, publish=False, flagged=True),
                            ForAPerson(words, flagged=True))


def test_every_inbox_reply_fits_three_gsm7_segments() -> None:
    long_answer = "after 9am on Monday (our office is closed now)"
    for step in Step:
        for told in (False, True):
            state = State(step=step, petition="sirt", name="A" * 80, postcode="SW1A 1AA",
                          options=("YES", "NO"))
            for text in ("Can you tell me more about SIRT?", "I feel hopeless about it all"):
                out = core.handle(state, Inbound(Channel.SMS, text),
                                  _context(inbox_told=told, inbox_answer=long_answer), NOW)
                if any(isinstance(e, ForAPerson) for e in out.effects):
                    for reply in _sms(out):
                        assert is_gsm7(reply) and segments(reply) <= 3, reply


# Helpers: the core alone, where the shell does not fill a Context field yet ---------------------

def _context(**changes: object) -> core.Context:
    chat = _chat()
    petitions = chat.catalogue.views({"sirt": 1})
    ctx = core.Context(petitions, "sirt", privacy_version="v1",
                       distress_words=chat.config.safeguarding.words)
    return replace(ctx, **changes)  # type: ignore[arg-type]


_CHAT: list[Chat] = []


def _chat() -> Chat:
    if not _CHAT:
        _CHAT.append(Chat(Channel.SMS))
    return _CHAT[0]


def _words(outcome: core.Outcome) -> str:
    texts = _chat().service.content().texts
    common = _chat().service.common
    return "\n\n".join(texts.render(r.phrase, common) for r in outcome.replies)


def _sms(outcome: core.Outcome) -> list[str]:
    from bot.core.render import Message, render
    texts, common = _chat().service.content().texts, _chat().service.common
    return [render(Message(texts.render(r.phrase, common), r.options), Channel.SMS).text
            for r in outcome.replies]


def test_gil_finds_the_voice_he_left_in_status_through_the_real_shell() -> None:
    gil = signed_up(Chat(Channel.SMS), name="Gil Hart")
    gil.send("VOICE")
    gil.send("It gave my mum more time with us")
    gil.send("YES")  # agreed to publication
    status = gil.send("STATUS").text
    assert '"It gave my mum more time with us"' in status


# Saying it in other words ---------------------------------------------------------------------

@pytest.mark.parametrize(("step", "text", "then"), [
    (Step.MENU, "I want to sign", Step.CONSENT),
    (Step.MENU, "sign me up please", Step.CONSENT),
    (Step.CONSENT, "sign me up", Step.NAME),
    (Step.CONSENT, "yes please", Step.NAME),
    (Step.REVIEW, "yes that's right", Step.UPDATES),
])
def test_quinn_says_it_in_her_own_words_and_is_understood(step: Step, text: str,
                                                           then: Step) -> None:
    quinn = at(step)
    quinn.send(text)
    assert quinn.state.step == then and not kept(quinn)


def test_quinn_does_not_sign_by_saying_she_would_not() -> None:
    quinn = at(Step.CONSENT)
    quinn.send("I would not sign this")
    assert quinn.state.step == Step.CONSENT


def test_rob_asks_a_question_in_his_first_message_and_it_is_kept_with_the_greeting() -> None:
    rob = Chat(Channel.SMS)
    question = "Hello, can I sign if I live in France? My husband has NETs"
    said = rob.send(question)
    assert GREETING in said.text and TOLD in said.text
    assert said.effects == (ForAPerson(question, flagged=False),)
    assert rob.state.step == Step.MENU


@pytest.mark.parametrize("first", ["Hi, I saw your poster at the clinic", "What is this?"])
def test_rob_says_hello_in_his_own_words_and_is_greeted(first: str) -> None:
    rob = Chat(Channel.SMS)
    said = rob.send(first)
    assert said.text.startswith(GREETING) and TOLD not in said.text and not kept(rob)


def test_rob_asks_to_sign_in_his_first_message_and_is_asked_for_consent() -> None:
    rob = Chat(Channel.WHATSAPP)
    assert CONSENT in rob.send("I'd like to sign the petition").text


@pytest.mark.parametrize("answer", ["yes that is fine", "ok go ahead", "sign it"])
def test_jack_answers_instead_of_giving_his_name_and_is_asked_again(answer: str) -> None:
    jack = at(Step.NAME)
    said = jack.send(answer)
    assert "Please send your full name, e.g. Sam Jones" in said.text
    assert jack.state.step == Step.NAME and jack.state.name == ""


def test_gil_left_a_long_voice_and_status_still_fits_three_texts() -> None:
    gil = signed_up(Chat(Channel.SMS), name="Gil Hart")
    gil.send("VOICE")
    voice = ("My mum had SIRT in 2021 and it gave us three more years together; every "
             "family with NETs deserves the same chance, wherever they live in England, and "
             "I will keep asking until they have it.")
    gil.send(voice)
    gil.send("YES")
    said = gil.send("STATUS")
    [text] = [r.text for r in said.rendered]
    assert segments(text) <= 3 and is_gsm7(text)
    assert voice[:60] in text and voice not in text and "..." in text
