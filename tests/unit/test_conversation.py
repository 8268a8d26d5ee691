"""The conversation contract (DESIGN.md section 6) as transcripts: what a supporter sends,
what they must read back, and which step the conversation is in afterwards."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from bot.core.conversation import (
    Channel,
    Erase,
    ForAPerson,
    GrantConsent,
    OptIn,
    OptOut,
    Purpose,
    SaveVoice,
    Sign,
    SignatureView,
    State,
    Step,
    Subscribe,
    SupporterView,
    issue_pages,
)
from bot.core.postcodes import Nation
from bot.shell import content, petition_versions
from models import ContentState
from tests.unit.transcript import (
    NOW,
    SILENT,
    TO_STEP,
    Chat,
    Row,
    play,
    signed_up,
    two_petition_config,
)

TITLE = "Ensure access for cancer patients to life-changing treatment approved by NICE"
SUMMARY = "NHS England still does not fund SIRT"
PRIVACY_URL = "https://www.planetscharity.org/privacy-policy"
VERSION = "2026-11-27"
GREETING = "Hello from PLANETS Cancer Charity"
CONSENT = "You must be 16 or over"
ASK_NAME = "What is your full name?"
ASK_POSTCODE = "What is your UK postcode?"
ASK_COUNTRY = "Which country do you live in?"
BAD_NAME = "Please send your full name"
REVIEW = "Please check what we will record"
SIGNED = "you have signed!"
ASK_UPDATES = "Would you like updates"
HELP = "PLANETS petition bot"
STOPPED = "You will get no more messages from PLANETS here"
STARTED = "OK, we will answer your messages here again"
NOT_UNDERSTOOD = "Sorry, I did not understand that"
ALREADY = "You have already signed this petition"
WELCOME_BACK = "Welcome back. You signed"



def at(step: Step, channel: Channel = Channel.SMS) -> Chat:
    shell = Chat(channel)
    shell.sends(TO_STEP[step])
    assert shell.state.step == step
    return shell


def signs(shell: Chat) -> list[Sign]:
    return [e for e in shell.effects if isinstance(e, Sign)]


# Reading ---------------------------------------------------------------------------------

def test_amira_signs_by_sms() -> None:
    amira = Chat(Channel.SMS)
    said = play(amira, [
        ("Hello", GREETING, Step.MENU),
        ("SIGN", CONSENT, Step.CONSENT),
        ("YES", ASK_NAME, Step.NAME),
        ("Amira Hussain", ASK_POSTCODE, Step.POSTCODE),
        ("SW1A 1AA", "Name: Amira Hussain\nPostcode: SW1A 1AA", Step.REVIEW),
        ("YES", "Thank you, Amira Hussain, you have signed! Your signature is number 1 here, "
                "and 49,258 people have signed in all", Step.UPDATES),
        ("YES", "We will send you updates", Step.SIGNED),
    ])
    greeting, consent, _, _, _, signing, updates = said
    assert TITLE in greeting.text and SUMMARY in greeting.text
    assert "49,257 people have signed" in greeting.text
    assert "Reply 1 SIGN, 2 MORE, 3 INFO or 4 HELP" in greeting.text
    assert PRIVACY_URL in consent.text and "16" in consent.text
    assert "Reply 1 YES or 2 NO" in consent.text
    assert consent.effects == ()
    assert amira.history[2].effects == (GrantConsent(Purpose.SIGN, "sirt", VERSION),)
    assert signing.effects == (Sign("sirt", "Amira Hussain", "SW1A 1AA", "", Nation.ENGLAND, ""),)
    # Thanks with the share link, then the updates question as its own message.
    assert signing.keys == ("signed", "ask_updates")
    assert "https://www.change.org/p/" in signing.rendered[0].text
    assert ASK_UPDATES not in signing.rendered[0].text
    assert ASK_UPDATES in signing.rendered[1].text
    assert updates.effects == (GrantConsent(Purpose.UPDATES, "sirt", VERSION), Subscribe("sirt"))
    assert amira.supporter.subscribed == {"sirt"}


def test_ben_reads_every_page_and_wraps_round() -> None:
    ben = Chat(Channel.SMS)
    pages = 3  # the shipped issue, in pages of three text messages
    table: list[Row] = [("hi", GREETING, Step.MENU)]
    table += [("MORE", f"(Page {n} of {pages})", Step.MENU) for n in range(1, pages)]
    table += [("MORE", f"(Page {pages} of {pages}, the end)", Step.MENU),
              ("MORE", f"(Page 1 of {pages})", Step.MENU)]
    said = play(ben, table)
    assert said[-1].words == said[1].words
    # Every page offers MORE, the last too (it starts again): INFO and HELP keep their numbers.
    assert said[pages].outcome.replies[0].options == said[1].outcome.replies[0].options
    assert "MORE" in said[1].outcome.replies[0].options
    assert ben.effects == []


@pytest.mark.parametrize("channel", [Channel.WHATSAPP, Channel.TELEGRAM])
def test_ben_reads_the_whole_issue_on_one_screen_where_messages_may_be_long(
        channel: Channel) -> None:
    ben = Chat(channel)
    issue = ben.config.petition("sirt").issue
    assert issue_pages(issue, channel) == ("\n\n".join(
        " ".join(paragraph.split()) for paragraph in issue.split("\n\n") if paragraph.strip()),)
    said = play(ben, [("hi", GREETING, Step.MENU),
                      ("MORE", "Sign the petition to support our call", Step.MENU)])
    assert "(Page" not in said[-1].words


def test_chloe_asks_who_the_petition_is_to() -> None:
    chloe = Chat(Channel.SMS, here={"sirt": 12})
    play(chloe, [
        ("hi", "49,269 people have signed", Step.MENU),
        ("INFO", "To: NHS England", Step.MENU),
    ])
    info = chloe.history[-1].text
    assert "Started by PLANETS Cancer Charity on 17 March 2025" in info
    assert "49,257 on Change.org + 12 here = 49,269" in info


def test_chloe_sees_the_count_by_source_before_anyone_signed_here() -> None:
    chloe = Chat(Channel.TELEGRAM)
    play(chloe, [("/start", GREETING, Step.MENU),
                 ("info", "49,257 on Change.org + 0 here = 49,257", Step.MENU)])


# Consent ---------------------------------------------------------------------------------

def test_dev_says_no_at_consent_and_nothing_is_stored_or_asked() -> None:
    dev = Chat(Channel.SMS)
    play(dev, [
        ("hi", GREETING, Step.MENU),
        ("SIGN", CONSENT, Step.CONSENT),
        ("NO", "nothing has been stored", Step.MENU),
    ])
    assert dev.effects == []
    assert dev.state.name == dev.state.postcode == dev.state.country == ""
    asked = {key for said in dev.history for key in said.keys}
    assert not asked & {"ask_name", "ask_postcode", "ask_country"}


def test_dev_stops_halfway_comes_back_and_declines_so_nothing_is_kept() -> None:
    dev = at(Step.POSTCODE)
    play(dev, [
        ("STOP", STOPPED, Step.NEW),
        ("START", STARTED, Step.MENU),
        ("SIGN", CONSENT, Step.CONSENT),
        ("NO", "nothing has been stored", Step.MENU),
        ("STATUS", "We hold no personal details", Step.MENU),
    ])
    assert dev.state.name == ""


def test_dev_cannot_skip_consent_by_typing_his_name() -> None:
    dev = at(Step.CONSENT)
    before = dev.state
    play(dev, [("Dev Patel", NOT_UNDERSTOOD, Step.CONSENT),
               ("SW1A 1AA", "Reply 1 YES", Step.CONSENT)])
    assert dev.state == before and dev.effects == []


# Name --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad_name", [
    "", "   ", "A" * 5000, "=cmd()", "+44", "+447700900123", "@x", "-Robert", "12345",
    "Amira 2", "YES", "Yes.", "ok", "I agree", "no", "SIGN",
    "😀😀", "🏳️‍🌈", "Q", "A" * 81, "<b>&", "Tom & Jerry",
])
def test_erin_is_asked_again_for_a_name_that_is_not_one(bad_name: str) -> None:
    erin = at(Step.NAME)
    before = erin.state
    said = erin.send(bad_name)
    assert said.keys == ("name_invalid",)
    assert BAD_NAME + ", e.g. Sam Jones" in said.text and "80 characters" in said.text
    assert erin.state == before and said.effects == ()


@pytest.mark.parametrize("good_name", [
    "Erin O'Neill", "Zoë Łukasz-Ó'Brien", "Siân ap Rhys", "李小龍", "Mary-Jane Watson-Smith",
    "J. R. Hartley", "A" * 80,
])
def test_erin_gives_a_name_and_is_asked_for_her_postcode(good_name: str) -> None:
    erin = at(Step.NAME, Channel.TELEGRAM)
    play(erin, [(good_name, ASK_POSTCODE, Step.POSTCODE)])
    assert erin.state.name == good_name


def test_erin_name_with_odd_spacing_is_tidied() -> None:
    erin = at(Step.NAME)
    play(erin, [("  Erin \t  O'Neill\n", "Thanks, Erin O'Neill.", Step.POSTCODE)])
    assert erin.state.name == "Erin O'Neill"


# Postcode and country ----------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "canonical"), [
    ("SW1A 1AA", "SW1A 1AA"),
    ("sw1a 1aa", "SW1A 1AA"),
    ("  SW1A1AA ", "SW1A 1AA"),
    ("s w 1 a 1 a a", "SW1A 1AA"),
    ("eh1   1yz", "EH1 1YZ"),
    ("BFPO 123", "BFPO 123"),
])
def test_femi_gives_a_postcode_and_sees_it_on_the_review(typed: str, canonical: str) -> None:
    femi = at(Step.POSTCODE)
    play(femi, [(typed, f"Postcode: {canonical}", Step.REVIEW)])
    assert femi.state.postcode == canonical and femi.state.country == ""


@pytest.mark.parametrize("bad_postcode", [
    "SW1A", "12345", "hello there", "🏠", "🇬🇧 SW1", "SW1A 1AA SW1A 1AA SW1A", "", "YES",
])
def test_femi_is_asked_again_for_a_postcode_that_is_not_one(bad_postcode: str) -> None:
    femi = at(Step.POSTCODE)
    before = femi.state
    said = femi.send(bad_postcode)
    assert said.keys == ("postcode_invalid",)
    assert "does not look like a full UK postcode" in said.text
    assert femi.state == before and said.effects == ()


@pytest.mark.parametrize(("postcode", "nation"), [
    ("SW1A 1AA", Nation.ENGLAND),
    ("EH1 1YZ", Nation.SCOTLAND),
    ("CF10 1EP", Nation.WALES),
    ("BT1 5GS", Nation.NORTHERN_IRELAND),
    ("BFPO 123", Nation.BFPO),
])
def test_gareth_signature_records_his_nation(postcode: str, nation: Nation) -> None:
    gareth = signed_up(Chat(Channel.WHATSAPP), name="Gareth Jones", postcode=postcode)
    assert signs(gareth) == [Sign("sirt", "Gareth Jones", postcode, "", nation, "")]


def test_farah_lives_abroad() -> None:
    farah = at(Step.POSTCODE)
    play(farah, [
        ("NONE", ASK_COUNTRY, Step.COUNTRY),
        ("12345", "Please send the name of the country", Step.COUNTRY),
        ("🇫🇷", "Please send the name of the country", Step.COUNTRY),
        ("=HYPERLINK()", "Please send the name of the country", Step.COUNTRY),
        ("UK", ASK_POSTCODE, Step.POSTCODE),
        ("none", ASK_COUNTRY, Step.COUNTRY),
        ("France", "Country: France", Step.REVIEW),
        ("YES", SIGNED, Step.UPDATES),
    ])
    assert signs(farah) == [Sign("sirt", "Amira Hussain", "", "France", Nation.OUTSIDE_UK, "")]
    assert "Postcode" not in farah.history[-2].text


@pytest.mark.parametrize("uk", ["UK", "u.k.", "United Kingdom", "Scotland", "great britain"])
def test_farah_who_says_she_lives_in_the_uk_is_asked_for_a_postcode(uk: str) -> None:
    farah = at(Step.COUNTRY)
    play(farah, [(uk, ASK_POSTCODE, Step.POSTCODE)])
    assert farah.state.country == "" and farah.effects[-1:] == [
        GrantConsent(Purpose.SIGN, "sirt", VERSION)]


@pytest.mark.parametrize("keyword", ["YES", "Yes.", "ok", "NO", "NONE", "none.", "EDIT", "sign"])
def test_farah_cannot_record_a_keyword_as_her_country(keyword: str) -> None:
    farah = at(Step.COUNTRY)
    before = farah.state
    said = farah.send(keyword)
    assert said.keys == ("country_invalid",)
    assert farah.state == before


# Review ------------------------------------------------------------------------------------

def test_gwen_edits_her_details_before_signing() -> None:
    gwen = at(Step.REVIEW)
    play(gwen, [
        ("EDIT", ASK_NAME, Step.NAME),
        ("Gwen Evans", "Thanks, Gwen Evans.", Step.POSTCODE),
        ("CF10 1EP", "Name: Gwen Evans\nPostcode: CF10 1EP", Step.REVIEW),
        ("EDIT", ASK_NAME, Step.NAME),
        ("Gwen Evans", ASK_POSTCODE, Step.POSTCODE),
        ("NONE", ASK_COUNTRY, Step.COUNTRY),
        ("Ireland", "Country: Ireland", Step.REVIEW),
        ("YES", SIGNED, Step.UPDATES),
    ])
    assert signs(gwen) == [Sign("sirt", "Gwen Evans", "", "Ireland", Nation.OUTSIDE_UK, "")]


def test_harry_says_no_at_the_review_and_is_not_signed() -> None:
    harry = at(Step.REVIEW)
    play(harry, [
        ("NO", "you have not signed and we have not kept your details", Step.MENU),
        ("STATUS", "We hold no personal details", Step.MENU),
    ])
    assert signs(harry) == [] and harry.state.name == "" and harry.state.postcode == ""


def test_harry_types_something_else_at_the_review() -> None:
    harry = at(Step.REVIEW)
    before = harry.state
    play(harry, [("maybe", NOT_UNDERSTOOD, Step.REVIEW)])
    assert harry.state == before and signs(harry) == []


# Updates -----------------------------------------------------------------------------------

def test_isla_signs_but_wants_no_updates() -> None:
    isla = signed_up(Chat(Channel.TELEGRAM), name="Isla Brown", updates="NO")
    assert "OK, no updates" in isla.history[-1].text
    assert not [e for e in isla.effects if isinstance(e, Subscribe)]
    assert GrantConsent(Purpose.UPDATES, "sirt", VERSION) not in isla.effects
    play(isla, [
        ("UPDATES", ASK_UPDATES, Step.UPDATES),
        ("YES", "We will send you updates", Step.SIGNED),
    ])
    assert isla.history[-1].effects == (GrantConsent(Purpose.UPDATES, "sirt", VERSION),
                                        Subscribe("sirt"))


def test_isla_must_answer_the_updates_question_with_yes_or_no() -> None:
    isla = at(Step.UPDATES)
    before = isla.state
    play(isla, [("whatever", NOT_UNDERSTOOD, Step.UPDATES)])
    assert isla.state == before and isla.history[-1].effects == ()


# Global keywords ---------------------------------------------------------------------------

@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("channel", list(Channel))
def test_jamal_asks_for_help_at_every_step(step: Step, channel: Channel) -> None:
    jamal = at(step, channel)
    before = jamal.state
    said = jamal.send("help")
    assert HELP in said.text and "info@planetscharity.org" in said.text
    assert jamal.state == before and said.effects == ()


@pytest.mark.parametrize("step", list(Step))
def test_kate_says_stop_at_every_step_and_hears_nothing_until_start(step: Step) -> None:
    kate = at(step)
    before = kate.state
    signed_before = signs(kate)
    play(kate, [("STOP", STOPPED, Step.NEW)])
    assert kate.history[-1].effects == (OptOut(),) and len(kate.history[-1].rendered) == 1
    # Whatever was being collected for a signature is forgotten with the STOP.
    assert kate.state == State(petition=before.petition, referral=before.referral)
    before = kate.state
    play(kate, [(text, SILENT, Step.NEW) for text in [
        "hello?", "SIGN", "YES", "1", "Kate Smith", "SW1A 1AA", "HELP", "STATUS", "DELETE",
        "RESTART", "STOP", "stop", "MORE", "SIGN SIRT", "", "A" * 5000]])
    expected = Step.SIGNED if kate.supporter.signatures else Step.MENU
    start = play(kate, [("START", STARTED, expected)])[0]
    assert start.effects == (OptIn(),)
    assert not kate.supporter.opted_out and kate.supporter.subscribed == frozenset()
    assert signs(kate) == signed_before


def test_kate_twilio_says_she_opted_out_whatever_her_message_said() -> None:
    kate = at(Step.MENU, Channel.SMS)
    said = kate.send("SIGN", opt_out="STOP")
    assert said.keys == ("stopped",) and said.effects == (OptOut(),)
    assert kate.send("SIGN").outcome.replies == ()
    said = kate.send("hello", opt_out="START")
    assert said.effects == (OptIn(),) and STARTED in said.text


@pytest.mark.parametrize("step", [Step.CONSENT, Step.REVIEW, Step.UPDATES, Step.DELETING])
def test_kate_says_yes_where_twilio_counts_yes_as_an_opt_in(step: Step) -> None:
    # Twilio's default opt-in keywords are START, YES and UNSTOP: with Advanced Opt-Out its
    # webhook marks a plain "YES" OptOutType=START. For someone not opted out it is a YES.
    kate = at(step)
    said = kate.send("YES", opt_out="START")
    assert "greeting" not in said.keys and OptIn() not in said.effects
    assert kate.state.step == {Step.CONSENT: Step.NAME, Step.REVIEW: Step.UPDATES,
                               Step.UPDATES: Step.SIGNED, Step.DELETING: Step.NEW}[step]
    assert type(said.effects[-1]) is {Step.CONSENT: GrantConsent, Step.REVIEW: Sign,
                                      Step.UPDATES: Subscribe, Step.DELETING: Erase}[step]


def test_kate_who_opted_out_is_resumed_by_twilios_yes() -> None:
    kate = at(Step.MENU)
    kate.send("STOP")
    said = kate.send("YES", opt_out="START")
    assert said.effects == (OptIn(),) and STARTED in said.text


@pytest.mark.parametrize("word", [
    "STOP", "stop", "Stop.", "STOPALL", "UNSUBSCRIBE", "unsubscribe", "CANCEL", "END", "QUIT",
    "stop please", "STOP sending me these", "/stop",
])
def test_leo_opts_out_with_any_stop_word(word: str) -> None:
    leo = at(Step.POSTCODE, Channel.WHATSAPP)
    said = leo.send(word)
    assert said.keys == ("stopped",) and said.effects == (OptOut(),)
    assert leo.send("SW1A 1AA").outcome.replies == ()


def test_leo_who_subscribed_is_not_resubscribed_by_start() -> None:
    leo = signed_up(Chat(Channel.SMS), name="Leo Grant", updates="YES")
    assert leo.supporter.subscribed == {"sirt"}
    play(leo, [
        ("STOP", STOPPED, Step.NEW),
        ("YES", SILENT, Step.NEW),
        ("UPDATES", SILENT, Step.NEW),
        ("START", STARTED, Step.SIGNED),
    ])
    start = leo.history[-1]
    assert start.effects == (OptIn(),)
    assert leo.supporter.subscribed == frozenset()
    assert "UPDATES" in start.outcome.replies[-1].options
    play(leo, [("STATUS", "Updates about it here: no.", Step.SIGNED)])


def test_mia_checks_her_status_before_and_after_signing() -> None:
    mia = at(Step.MENU)
    play(mia, [("STATUS", "We hold no personal details about you", Step.MENU)])
    mia.sends(["SIGN", "YES", "Mia Wong"])
    play(mia, [("status", "Not signed yet: we have your name as Mia Wong", Step.POSTCODE),
               ("BT1 5GS", REVIEW, Step.REVIEW), ("YES", SIGNED, Step.UPDATES),
               ("YES", "updates", Step.SIGNED)])
    status = mia.send("STATUS").text
    assert f'You signed "{TITLE}" on 1 Dec 2026 by SMS (signature no. 1 here) as Mia Wong' in (
        status)
    assert "Postcode: BT1 5GS" in status and "Updates about it here: yes." in status
    assert "Not signed yet" not in status


def test_nadia_deletes_her_data_after_a_confirmation() -> None:
    nadia = signed_up(Chat(Channel.SMS), name="Nadia Ali", updates="YES")
    play(nadia, [
        ("DELETE", "Shall we delete them?\nReply 1 YES or 2 NO", Step.DELETING),
        ("NO", "Nothing has been deleted", Step.SIGNED),
    ])
    assert not [e for e in nadia.effects if isinstance(e, Erase)]
    assert nadia.supporter.signatures and nadia.supporter.subscribed == {"sirt"}
    play(nadia, [
        ("DELETE", "Shall we delete them?", Step.DELETING),
        ("maybe", NOT_UNDERSTOOD, Step.DELETING),
        ("YES", "your personal data has been erased", Step.NEW),
    ])
    assert nadia.history[-1].effects == (Erase(),)
    assert nadia.state == State() and nadia.supporter == SupporterView()
    play(nadia, [("hi", "49,257 people have signed", Step.MENU),
                 ("STATUS", "We hold no personal details", Step.MENU)])


def test_nadia_deletes_halfway_through_signing_then_changes_her_mind() -> None:
    nadia = at(Step.REVIEW)
    before = nadia.state
    play(nadia, [("DELETE", "Shall we delete them?", Step.DELETING),
                 ("DELETE", "Shall we delete them?", Step.DELETING),
                 ("NO", "Nothing has been deleted", Step.REVIEW)])
    assert replace(nadia.state, resume=before.resume) == before  # `resume` is bookkeeping
    play(nadia, [("DELETE", "Shall we delete them?", Step.DELETING),
                 ("YES", "erased", Step.NEW)])
    assert nadia.state == State() and signs(nadia) == []


def test_omar_restarts_halfway_through_signing() -> None:
    omar = at(Step.POSTCODE)
    play(omar, [("RESTART", GREETING, Step.MENU)])
    assert omar.state.name == "" and omar.state.page == 0
    play(omar, [("SIGN", CONSENT, Step.CONSENT)])


# Returning supporters ----------------------------------------------------------------------

def test_priya_who_signed_by_sms_writes_again_on_whatsapp() -> None:
    sms = signed_up(Chat(Channel.SMS), name="Priya Shah")
    whatsapp = sms.on(Channel.WHATSAPP)
    play(whatsapp, [
        ("Hello", WELCOME_BACK, Step.SIGNED),
        ("SIGN", ALREADY, Step.SIGNED),
        ("MORE", "Sign the petition to support our call", Step.SIGNED),
        ("SIGN SIRT", WELCOME_BACK, Step.SIGNED),
        ("RESTART", WELCOME_BACK, Step.SIGNED),
        ("START SIRT_ref9", WELCOME_BACK, Step.SIGNED),
    ])
    greeting = whatsapp.history[0]
    assert "signature no. 1 here" in greeting.text and "49,258 people have signed" in greeting.text
    assert "SIGN" not in greeting.outcome.replies[0].options
    assert signs(whatsapp) == [] and whatsapp.effects == []


def test_priya_signs_again_in_the_same_chat_and_is_thanked_not_signed_twice() -> None:
    priya = signed_up(Chat(Channel.TELEGRAM), name="Priya Shah")
    for text in ["SIGN", "YES", "sign", "hi", "YES", "Priya Shah", "SW1A 1AA", "YES"]:
        priya.send(text)
    assert len(signs(priya)) == 1
    assert ALREADY in priya.history[-8].text


# Channels, numbers and case -----------------------------------------------------------------

@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP])
def test_quentin_answers_with_numbers_by_text_message(channel: Channel) -> None:
    quentin = Chat(channel)
    play(quentin, [
        ("hi", "Reply 1 SIGN, 2 MORE, 3 INFO or 4 HELP", Step.MENU),
        ("1", CONSENT, Step.CONSENT),
        ("1", ASK_NAME, Step.NAME),
        ("Quentin Blake", ASK_POSTCODE, Step.POSTCODE),
        ("SW1A 1AA", "Reply 1 YES or 2 EDIT", Step.REVIEW),
        ("1", SIGNED, Step.UPDATES),
        ("2", "OK, no updates", Step.SIGNED),
    ])
    assert len(signs(quentin)) == 1


@pytest.mark.parametrize("number", ["0", "5", "99", "²", "⑴", "00"])
def test_quentin_sends_a_number_that_is_no_option(number: str) -> None:
    quentin = at(Step.MENU, Channel.SMS)
    before = quentin.state
    said = quentin.send(number)
    assert NOT_UNDERSTOOD in said.text and quentin.state == before


def test_rosa_on_telegram_gets_buttons_not_numbers() -> None:
    rosa = Chat(Channel.TELEGRAM)
    play(rosa, [
        ("/start", GREETING, Step.MENU),
        ("1", NOT_UNDERSTOOD, Step.MENU),
        ("SIGN", CONSENT, Step.CONSENT),
    ])
    greeting, _, consent = rosa.history
    assert "Reply 1" not in greeting.text
    assert [data for _, data in greeting.rendered[0].buttons] == ["SIGN", "MORE", "INFO", "HELP"]
    assert [data for _, data in consent.rendered[0].buttons] == ["YES", "NO"]


def test_sam_types_in_any_case() -> None:
    sam = Chat(Channel.SMS)
    play(sam, [
        ("hello", GREETING, Step.MENU),
        ("sign", CONSENT, Step.CONSENT),
        ("Yes.", ASK_NAME, Step.NAME),
        ("Sam Okafor", ASK_POSTCODE, Step.POSTCODE),
        ("none", ASK_COUNTRY, Step.COUNTRY),
        ("nigeria", "Country: nigeria", Step.REVIEW),
        ("edit", ASK_NAME, Step.NAME),
        ("Sam Okafor", ASK_POSTCODE, Step.POSTCODE),
        ("se1 7pb", "Postcode: SE1 7PB", Step.REVIEW),
        ("yes!", SIGNED, Step.UPDATES),
        ("No", "OK, no updates", Step.SIGNED),
        ("Status", "Sam Okafor", Step.SIGNED),
    ])


# Deep links and petition codes --------------------------------------------------------------

def test_tariq_follows_a_referral_link_on_telegram() -> None:
    tariq = Chat(Channel.TELEGRAM)
    play(tariq, [("/start SIRT_ref42", GREETING, Step.MENU)])
    assert tariq.state.referral == "ref42"
    play(tariq, [("SIGN", CONSENT, Step.CONSENT), ("YES", ASK_NAME, Step.NAME),
                 ("Tariq Aziz", ASK_POSTCODE, Step.POSTCODE), ("EH1 1YZ", REVIEW, Step.REVIEW),
                 ("EDIT", ASK_NAME, Step.NAME), ("Tariq Aziz", ASK_POSTCODE, Step.POSTCODE),
                 ("EH1 1YZ", REVIEW, Step.REVIEW), ("YES", SIGNED, Step.UPDATES)])
    assert signs(tariq) == [Sign("sirt", "Tariq Aziz", "EH1 1YZ", "", Nation.SCOTLAND, "ref42")]


def test_tariq_texts_start_with_a_referral_code() -> None:
    tariq = Chat(Channel.SMS)
    play(tariq, [("START SIRT_ref42", GREETING, Step.MENU), ("SIGN", CONSENT, Step.CONSENT),
                 ("YES", ASK_NAME, Step.NAME), ("Tariq Aziz", ASK_POSTCODE, Step.POSTCODE),
                 ("CF10 1EP", REVIEW, Step.REVIEW), ("YES", SIGNED, Step.UPDATES)])
    assert signs(tariq) == [Sign("sirt", "Tariq Aziz", "CF10 1EP", "", Nation.WALES, "ref42")]


@pytest.mark.parametrize("text", ["SIGN SIRT", "sign sirt", "SIGN sirt"])
def test_uma_names_the_petition_by_its_code(text: str) -> None:
    uma = Chat(Channel.WHATSAPP)
    play(uma, [(text, GREETING, Step.MENU), ("SIGN", CONSENT, Step.CONSENT)])
    assert uma.state.petition == "sirt"


@pytest.mark.parametrize("text", ["SIGN NOPE", "START NOPE_ref1", "/start not*a*code"])
def test_uma_gets_a_polite_answer_for_an_unknown_code(text: str) -> None:
    uma = Chat(Channel.TELEGRAM)
    said = play(uma, [(text, "Sorry, there is no petition with that code.", Step.MENU)])[0]
    assert GREETING in said.text and said.effects == ()


def test_victor_signs_a_second_petition_by_its_code() -> None:
    victor = Chat(Channel.SMS, config=two_petition_config())
    signed_up(victor, name="Victor Hugo")
    play(victor, [
        ("SIGN SCANS", "Fund faster scans", Step.MENU),
        ("SIGN", CONSENT, Step.CONSENT),
        ("YES", ASK_NAME, Step.NAME),
        ("Victor Hugo", ASK_POSTCODE, Step.POSTCODE),
        ("SW1A 1AA", REVIEW, Step.REVIEW),
        ("YES", SIGNED, Step.UPDATES),
        ("NO", "no updates", Step.SIGNED),
        ("SIGN SIRT", WELCOME_BACK, Step.SIGNED),
        ("SIGN", ALREADY, Step.SIGNED),
    ])
    assert [s.petition for s in signs(victor)] == ["sirt", "scans"]
    assert [e.petition for e in victor.effects if isinstance(e, GrantConsent)] == [
        "sirt", "scans"]


def test_wendy_signature_made_elsewhere_shows_in_status() -> None:
    signature = SignatureView("sirt", 7, datetime(2026, 1, 5, tzinfo=UTC), Channel.TELEGRAM,
                              "Wendy Lee", "", "Canada")
    wendy = Chat(Channel.SMS, signed=(signature,))
    play(wendy, [("STATUS", "on 5 Jan 2026 by Telegram (signature no. 7 here) as Wendy Lee, "
                            "Country: Canada", Step.NEW)])


def test_rosa_on_telegram_links_her_phone_number_once() -> None:
    rosa = Chat(Channel.TELEGRAM)
    greeting = rosa.send("/start")
    assert greeting.keys == ("greeting", "offer_link")
    assert greeting.rendered[1].contact_button and greeting.rendered[1].buttons == ()
    before = rosa.state
    refused = rosa.send("", contact="other")
    assert refused.keys == ("contact_refused",) and rosa.state == before
    linked = rosa.send("", contact="own")
    assert linked.keys == ("phone_linked", "greeting") and linked.effects == ()
    play(rosa, [("RESTART", GREETING, Step.MENU)])
    assert "offer_link" not in rosa.history[-1].keys


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP])
def test_quentin_by_text_message_is_never_offered_a_phone_link(channel: Channel) -> None:
    quentin = Chat(channel)
    assert quentin.send("hi").keys == ("greeting",)


def test_nadia_says_why_she_signed_and_agrees_to_publication() -> None:
    nadia = at(Step.SIGNED, Channel.WHATSAPP)
    play(nadia, [
        ("VOICE", "do not name or identify other people", Step.VOICE),
        ("ok", "Please send a short message", Step.VOICE),
        ("My brother is waiting for SIRT", "May we publish your words", Step.VOICE_CONSENT),
        ("YES", "Our team will read it before it is published", Step.SIGNED),
    ])
    assert nadia.history[-1].effects == (
        GrantConsent(Purpose.PUBLISH_VOICE, "sirt", nadia.config.privacy.version),
        SaveVoice("sirt", "My brother is waiting for SIRT", publish=True))


def test_omar_declines_publication_and_nothing_is_kept() -> None:
    omar = at(Step.SIGNED)
    play(omar, [
        ("VOICE", "why did you sign", Step.VOICE),
        ("Because NICE already approved it", "May we publish", Step.VOICE_CONSENT),
        ("NO", "we have not kept your message", Step.SIGNED),
    ])
    assert not any(isinstance(e, SaveVoice) for e in omar.effects)
    assert omar.state.voice == ""


def test_priya_in_distress_is_signposted_and_flagged_never_asked_to_publish() -> None:
    priya = at(Step.SIGNED, Channel.TELEGRAM)
    said = play(priya, [("VOICE", "why did you sign", Step.VOICE),
                        ("Honestly I feel hopeless and can't go on", "116 123", Step.SIGNED)])[-1]
    assert "NHS 111" in said.text
    words = "Honestly I feel hopeless and can't go on"
    assert said.effects == (SaveVoice("sirt", words, publish=False, flagged=True),
                            ForAPerson(words, flagged=True))


def test_quentin_reads_approved_voices_under_info() -> None:
    quentin = at(Step.MENU)
    quentin.publish_voice("It gave my mum more time with us", nation="scotland")
    said = quentin.send("INFO")
    assert '"It gave my mum more time with us" (Scotland)' in said.text
    assert said.outcome.replies[-1].options == ("SIGN", "MORE", "INFO", "HELP")


def test_a_yes_is_recorded_against_the_consent_wording_they_read() -> None:
    """Staff reword the consent while Amira reads it: her YES cites the version she read;
    Ben, who is shown the new wording, cites the new version."""
    amira = Chat(Channel.SMS)
    amira.sends(["Hi", "SIGN"])
    with amira.service.sessions.begin() as session:
        content.changed(session)
        session.execute(update(ContentState).values(privacy_version=f"{VERSION}+1"))
    ben = Chat(Channel.TELEGRAM, service=amira.service)
    assert amira.send("YES").effects == (GrantConsent(Purpose.SIGN, "sirt", VERSION),)
    ben.sends(["Hi", "SIGN"])
    assert ben.send("YES").effects == (GrantConsent(Purpose.SIGN, "sirt", f"{VERSION}+1"),)


def test_a_closed_petition_is_read_but_not_signed() -> None:
    """Closed in the console while Cara was signing, and before Dev wrote: Cara's YES at
    the review signs nothing, and Dev is told it closed when he greets and asks to sign."""
    cara = Chat(Channel.SMS)
    cara.sends(["Hi", "SIGN", "YES", "Cara Jones", "SW1A 1AA"])
    with cara.service.sessions.begin() as session:
        petition_versions.close(session, cara.config, "sirt", "editor@planets.example", NOW)
    review = cara.send("YES")
    assert not any(isinstance(e, Sign) for e in review.effects)
    assert "This petition closed on 1 December 2026" in review.rendered[0].text
    assert cara.state.step == Step.MENU and "SIGN" not in cara.state.options

    dev = Chat(Channel.TELEGRAM, service=cara.service)
    hello = dev.send("Hi")
    assert "closed on 1 December 2026" in hello.rendered[0].text
    assert "SIGN" not in dev.state.options
    assert "can no longer be signed" in dev.send("SIGN").rendered[0].text
    assert dev.effects == []
