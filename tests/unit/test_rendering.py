"""Every reply the bot can give, as each channel shows it: SMS in GSM-7 within three
segments and never cut short, WhatsApp within Twilio's limit, Telegram HTML-escaped with
buttons whose callback_data is the keyword."""

from __future__ import annotations

import functools
import html
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.core.conversation import Channel, SignatureView, State, Step, issue_pages
from bot.core.gsm import is_gsm7, segments, to_gsm7
from bot.core.render import SHARE_PHONE, Message, Rendered, render
from bot.core.texts import DEFAULTS, LABELS, Phrase
from tests.unit.transcript import NOW, Chat, Said, shipped_config

# 80 characters, the longest name allowed, full of letters SMS cannot carry.
NAME_80 = "Zoë Łukasz-Ó'Brien Wiśniewska-Żółć Þórðardóttir Nguyễn Thị Minh Khai Đặng Ōtsuka"
# Texts that only ever appear inside another one (status lines, places).
NESTED = {"status_signature", "status_updates", "status_in_progress", "place_postcode",
          "place_country", "voice_line", "status_voice", "voice_pending", "voice_published",
          "voice_private", "status_inbox", "inbox_soon"}
SHELL_ONLY = {"over_budget"}  # said by the shell, not the conversation
# Said once the shell reports that the supporter's open inbox conversation told them who
# reads it (tests/unit/test_personas.py shows it fits).
SHELL_DECIDES = {"inbox_noted"}
TELEGRAM_ONLY = {"offer_link", "phone_linked", "contact_refused"}  # linking a phone number


@functools.cache
def walk(channel: Channel) -> list[Said]:
    """Every step and every answer, with the longest content the shipped config has."""
    said: list[Said] = []
    zoe = Chat(channel, here={"sirt": 123_456})
    pages = len(issue_pages(zoe.config.petition("sirt").issue, channel))
    said += zoe.sends(["hi", *["MORE"] * (pages + 1), "INFO", "HELP", "STATUS", "SIGN", "HELP",
                       "perhaps", "NO", "SIGN", "YES", "", "HELP", NAME_80, "STATUS", "ZZ9",
                       "NONE", "12", "UK", "NONE", "Trinidad & Tobago", "EDIT", NAME_80,
                       "TD15 1AA", "hmm", "YES", "maybe", "YES", "STATUS", "SIGN", "hello",
                       "MORE", "INFO", "DELETE", "nope", "NO", "STOP", "START", "DELETE", "YES"])
    assert zoe.state == State() and zoe.effects
    yusuf = Chat(channel)
    said += yusuf.sends(["SIGN NOPE", "/start SIRT_ref42", "SIGN", "YES", "Yusuf Ali", "SW1A 1AA",
                         "NO", "SIGN", "YES", "Yusuf Ali", "BT1 5GS", "YES", "NO", "UPDATES",
                         "NO", "RESTART"])
    # Voices: one kept, one that asks for help, one withdrawn; then INFO shows approved ones.
    said += yusuf.sends(["VOICE", "hi", "My mum waited two years for SIRT and it changed her life",
                         "maybe", "YES", "VOICE", "I feel hopeless and want to die", "VOICE",
                         "It matters to our family", "NO", "VOICE", "NO"])
    yusuf.publish_voice("It gave my mum more time with us", nation="scotland")
    said += yusuf.sends(["INFO"])
    # Words for a person at every kind of step, and DELETE then NO from the middle.
    ines = Chat(channel, here={"sirt": 123_456})
    said += ines.sends([
        "SIGN", "Can I sign for my mum as well?", "YES", "Why do you need my full name?",
        NAME_80, "Is my postcode shared with anyone at all?", "NONE", "DELETE", "NO",
        "Trinidad & Tobago", "DELETE", "NO", "YES", "NO", "HELP",
        "Thank you for doing this, my dad has a NET", "VOICE", "PERSON",
        "Can someone call me about my dad please", "DELETE", "NO", "NO", "PERSON",
        "I feel hopeless", "INFO", "MORE"])
    # A conversation saved by an older version, with no choices remembered.
    xena = Chat(channel, state=State(step=Step.MENU, petition="sirt"))
    said += xena.sends(["what"])
    if channel == Channel.TELEGRAM:
        said += [xena.send("", contact="other"), xena.send("", contact="own")]
    # A petition that has closed: read, and not signed.
    config = shipped_config()
    closed = replace(config.petition("sirt"), closed=NOW.date())
    wren = Chat(channel, config=replace(config, petitions=(closed,)))
    said += wren.sends(["hi", "SIGN"])
    return said


def pairs(said: list[Said]) -> list[tuple[Message, Rendered]]:
    return [pair for s in said for pair in zip(s.messages, s.rendered, strict=True)]


@pytest.mark.parametrize("channel", list(Channel))
def test_the_walk_reaches_every_text_the_conversation_has(channel: Channel) -> None:
    seen = {key for s in walk(channel) for key in s.keys}
    expected = set(DEFAULTS) - NESTED - SHELL_ONLY - SHELL_DECIDES
    if channel == Channel.SMS:
        expected -= {"page_whole"}  # the issue takes three text messages
    else:
        expected -= {"page", "page_last"}  # the whole issue fits one page
    if channel != Channel.TELEGRAM:
        expected -= TELEGRAM_ONLY
    assert expected - seen == set()
    assert seen - expected <= SHELL_DECIDES


def test_every_sms_is_gsm7_within_three_segments_and_never_cut() -> None:
    for message, rendered in pairs(walk(Channel.SMS)):
        assert is_gsm7(rendered.text), rendered.text
        assert segments(rendered.text) <= 3, rendered.text
        # Nothing was truncated: the SMS is the WhatsApp text, transliterated.
        assert rendered.text == to_gsm7(render(message, Channel.WHATSAPP).text), rendered.text
        assert rendered.buttons == ()


def test_zoe_sees_her_name_without_letters_sms_cannot_carry() -> None:
    zoe = Chat(Channel.SMS)
    said = zoe.sends(["hi", "SIGN", "YES", NAME_80])[-1]
    assert "Thanks, Zoe Lukasz-O'Brien Wisniewska-Zolc Thordardottir Nguyen Thi" in said.text
    assert zoe.state.name == NAME_80  # stored as she wrote it


def test_every_whatsapp_message_is_within_twilios_limit() -> None:
    for message, rendered in pairs(walk(Channel.WHATSAPP)):
        assert len(rendered.text) < 1600
        assert rendered.text.startswith(message.text), "nothing cut"
        if len(message.options) > 1:
            assert "Reply 1 " + message.options[0] in rendered.text
        assert rendered.buttons == ()


def test_every_telegram_message_is_escaped_with_keyword_buttons() -> None:
    for message, rendered in pairs(walk(Channel.TELEGRAM)):
        assert rendered.text == html.escape(message.text, quote=False)
        assert len(rendered.text) < 4096
        assert "Reply 1" not in rendered.text
        inline = [o for o in message.options if o != SHARE_PHONE]
        assert [data for _, data in rendered.buttons] == inline
        assert rendered.contact_button == (
            LABELS[SHARE_PHONE] if SHARE_PHONE in message.options else "")
        for label, data in rendered.buttons:
            assert data == data.upper() and data.isalpha()
            assert len(data.encode()) <= 64
            assert label == LABELS[data]


def test_ulrich_on_telegram_sees_an_ampersand_escaped_in_his_review() -> None:
    ulrich = Chat(Channel.TELEGRAM)
    said = ulrich.sends(["hi", "SIGN", "YES", "Ulrich Weber", "NONE", "Trinidad & Tobago"])[-1]
    assert "Country: Trinidad &amp; Tobago" in said.text


def test_a_stored_name_with_markup_is_escaped_on_telegram() -> None:
    # Names typed into the bot cannot hold "<" or "&", but a stored one (an import, an older
    # version) is shown escaped all the same.
    signature = SignatureView("sirt", 3, datetime(2026, 2, 1, tzinfo=UTC), Channel.SMS,
                              "Tom <b>& Jerry", "SW1A 1AA", "")
    tom = Chat(Channel.TELEGRAM, signed=(signature,))
    said = tom.send("STATUS")
    assert "as Tom &lt;b&gt;&amp; Jerry, Postcode: SW1A 1AA" in said.text
    assert "<b>" not in said.text
    assert render(Message("<b>&</b>"), Channel.TELEGRAM).text == "&lt;b&gt;&amp;&lt;/b&gt;"


@pytest.mark.parametrize("channel", list(Channel))
def test_the_over_budget_notice_fits_every_channel(channel: Channel) -> None:
    shell = Chat(channel)
    text = shell.service.content().texts.render(Phrase("over_budget"), shell.service.common)
    rendered = render(Message(text), channel)
    assert rendered.text in (text, to_gsm7(text), html.escape(text, quote=False))
    assert channel != Channel.SMS or segments(rendered.text) == 1


def test_every_keyword_button_has_a_label_and_short_callback_data() -> None:
    for keyword, label in LABELS.items():
        rendered = render(Message("Choose", (keyword,)), Channel.TELEGRAM)
        if keyword == SHARE_PHONE:  # a reply-keyboard button that shares the contact
            assert rendered.buttons == () and rendered.contact_button == label
            continue
        assert rendered.buttons == ((label, keyword),)
        assert len(keyword.encode()) <= 64
