"""The fake Telegram server, driven by python-telegram-bot's own HTTP client (httpx)."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram_api import FakeTelegram, parse_params

USER = 7
KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("Sign", callback_data="sign:planets"),
                                  InlineKeyboardButton("Read", callback_data="read")]])


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


def bot_for(fake: FakeTelegram) -> Bot:
    return Bot(fake.token, base_url=fake.base_url)


def raw_post(fake: FakeTelegram, method: str, data: dict[str, Any] | None = None,
             token: str | None = None, as_json: bool = False) -> tuple[int, dict[str, Any]]:
    """A request without PTB, to check status codes and bodies exactly."""
    url = f"{fake.base_url}{token or fake.token}/{method}"
    if as_json:
        body, ctype = json.dumps(data or {}).encode(), "application/json"
    else:
        body = urllib.parse.urlencode(data or {}).encode()
        ctype = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# -- basics ------------------------------------------------------------------------------------

def test_base_url_and_port(fake: FakeTelegram) -> None:
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/bot"
    assert fake.token == "123456:TEST-TOKEN"


def test_get_me_returns_the_bot(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot_for(fake) as bot:
            me = await bot.get_me()
            assert me.username == "planets_petition_bot"
            assert me.is_bot and me.id == 123456
            assert me.can_join_groups is True
            assert me.supports_inline_queries is False
            assert bot.username == "planets_petition_bot"

    asyncio.run(scenario())
    assert fake.calls[0]["method"] == "getMe"
    assert fake.calls[0]["status"] == 200


def test_ptb_sends_form_encoded_with_json_inside() -> None:
    """What PTB 22.8 puts on the wire, decoded the way the fake decodes it."""
    body = (b"chat_id=7&text=123&parse_mode=HTML&disable_notification=true&reply_markup="
            b"%7B%22inline_keyboard%22%3A+%5B%5B%7B%22callback_data%22%3A+%22sign%22%2C"
            b"+%22text%22%3A+%22Sign%22%7D%5D%5D%7D")
    params = parse_params("application/x-www-form-urlencoded", body)
    assert params == {"chat_id": 7, "text": "123", "parse_mode": "HTML",
                      "disable_notification": True,
                      "reply_markup": {"inline_keyboard": [[{"callback_data": "sign",
                                                             "text": "Sign"}]]}}
    assert parse_params("", b"", "chat_id=%40channel") == {"chat_id": "@channel"}


def test_send_message_with_inline_keyboard_is_recorded(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot_for(fake) as bot:
            first = await bot.send_message(USER, "<b>Sign?</b>", parse_mode=ParseMode.HTML,
                                           reply_markup=KEYBOARD)
            second = await bot.send_message(USER, "and again")
            assert first.reply_markup == KEYBOARD
            assert first.chat.id == USER and first.chat.type == "private"
            assert first.from_user is not None and first.from_user.is_bot
            assert second.message_id > first.message_id

    asyncio.run(scenario())
    first, second = fake.sent
    assert first == {
        "chat_id": USER, "text": "<b>Sign?</b>", "parse_mode": "HTML",
        "reply_markup": {"inline_keyboard": [[
            {"text": "Sign", "callback_data": "sign:planets"},
            {"text": "Read", "callback_data": "read"}]]},
        "message_id": first["message_id"],
    }
    assert second["reply_markup"] is None and second["parse_mode"] is None
    assert fake.messages_to(USER) == [first, second]
    assert fake.messages_to(8) == []


def test_reply_keyboard_with_contact_button_is_recorded(fake: FakeTelegram) -> None:
    markup = ReplyKeyboardMarkup([[KeyboardButton("Share", request_contact=True)]],
                                 one_time_keyboard=True, resize_keyboard=True)

    async def scenario() -> None:
        async with bot_for(fake) as bot:
            message = await bot.send_message(USER, "Share your number?", reply_markup=markup)
            assert message.reply_markup is None  # Telegram echoes only inline keyboards

    asyncio.run(scenario())
    recorded = fake.sent[0]["reply_markup"]
    assert recorded["keyboard"] == [[{"text": "Share", "request_contact": True}]]
    assert recorded["one_time_keyboard"] is True and recorded["resize_keyboard"] is True


def test_callback_data_over_64_bytes_is_refused(fake: FakeTelegram) -> None:
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x" * 65)]])

    async def scenario() -> None:
        async with bot_for(fake) as bot:
            with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
                await bot.send_message(USER, "hi", reply_markup=too_long)

    asyncio.run(scenario())
    assert fake.sent == []


# -- injected errors ---------------------------------------------------------------------------

def test_blocked_chat_raises_forbidden(fake: FakeTelegram) -> None:
    fake.block(USER)

    async def scenario() -> None:
        async with bot_for(fake) as bot:
            with pytest.raises(Forbidden, match="bot was blocked by the user"):
                await bot.send_message(USER, "hello")
            await bot.send_message(8, "others still reachable")

    asyncio.run(scenario())
    assert [s["chat_id"] for s in fake.sent] == [8]
    assert [c["status"] for c in fake.calls_to("sendMessage")] == [403, 200]


def test_rate_limit_raises_retry_after_then_recovers(fake: FakeTelegram,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    fake.rate_limit(USER, retry_after=1, times=2)

    async def scenario() -> None:
        async with bot_for(fake) as bot:
            for _ in range(2):
                with pytest.raises(RetryAfter) as caught:
                    await bot.send_message(USER, "hello")
                assert caught.value.retry_after == dtm.timedelta(seconds=1)
            await bot.send_message(USER, "hello")

    asyncio.run(scenario())
    assert len(fake.sent) == 1
    assert [c["status"] for c in fake.calls_to("sendMessage")] == [429, 429, 200]
    fake.rate_limit(USER, retry_after=3)
    status, body = raw_post(fake, "sendMessage", {"chat_id": USER, "text": "x"})
    assert (status, body) == (429, {"ok": False, "error_code": 429,
                                    "description": "Too Many Requests: retry after 3",
                                    "parameters": {"retry_after": 3}})


def test_migrate_raises_chat_migrated(fake: FakeTelegram) -> None:
    fake.migrate(-4001, -1004001)

    async def scenario() -> None:
        async with bot_for(fake) as bot:
            with pytest.raises(ChatMigrated) as caught:
                await bot.send_message(-4001, "hello group")
            assert caught.value.new_chat_id == -1004001
            message = await bot.send_message(-1004001, "hello supergroup")
            assert message.chat.type == "supergroup"

    asyncio.run(scenario())
    assert [s["chat_id"] for s in fake.sent] == [-1004001]


def test_fail_next_gives_a_5xx(fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", status=502, times=1)

    async def scenario() -> None:
        async with bot_for(fake) as bot:
            with pytest.raises(NetworkError, match="Bad Gateway"):
                await bot.send_message(USER, "hello")
            await bot.send_message(USER, "hello")

    asyncio.run(scenario())
    assert [c["status"] for c in fake.calls_to("sendMessage")] == [502, 200]
    assert len(fake.sent) == 1


def test_wrong_token_and_unknown_method(fake: FakeTelegram) -> None:
    assert raw_post(fake, "getMe", token="999:WRONG") == (
        401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    assert raw_post(fake, "sendTelepathy") == (
        404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"})
    assert raw_post(fake, "GETME")[1]["result"]["username"] == "planets_petition_bot"

    async def scenario() -> None:
        async with Bot("999:WRONG", base_url=fake.base_url) as bot:
            await bot.get_me()

    with pytest.raises(InvalidToken):
        asyncio.run(scenario())


def test_json_bodies_are_accepted_too(fake: FakeTelegram) -> None:
    status, body = raw_post(fake, "sendMessage", {"chat_id": USER, "text": "json",
                                                  "reply_markup": {"inline_keyboard": []}},
                            as_json=True)
    assert status == 200 and body["result"]["text"] == "json"
    assert fake.sent[0]["reply_markup"] == {"inline_keyboard": []}


# -- updates -----------------------------------------------------------------------------------

def test_get_updates_returns_each_kind_of_update(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot_for(fake) as bot:
            await bot.send_message(USER, "Sign?", reply_markup=KEYBOARD)
            fake.user_sends(USER, "/start planets_r12", first_name="Amira")
            fake.user_presses(USER, "sign:planets")
            fake.user_shares_contact(USER, "+447700900123")
            updates = await bot.get_updates(timeout=1)
            assert [u.update_id for u in updates] == [1, 2, 3]
            text, press, contact = updates
            assert text.message is not None and text.message.text == "/start planets_r12"
            assert text.message.parse_entities() == {text.message.entities[0]: "/start"}
            assert text.effective_user is not None and text.effective_user.first_name == "Amira"
            assert press.callback_query is not None
            assert press.callback_query.data == "sign:planets"
            assert isinstance(press.callback_query.message, Message)
            assert press.callback_query.message.reply_markup == KEYBOARD
            assert contact.message is not None and contact.message.contact is not None
            assert contact.message.contact.user_id == USER
            assert contact.message.contact.phone_number == "+447700900123"

    asyncio.run(scenario())


def test_long_poll_waits_for_the_timeout_when_empty(fake: FakeTelegram) -> None:
    async def scenario() -> float:
        async with bot_for(fake) as bot:
            started = time.monotonic()
            assert await bot.get_updates(timeout=1) == ()
            return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    assert 0.9 <= elapsed < 2.5


def test_long_poll_wakes_when_an_update_arrives(fake: FakeTelegram) -> None:
    timer = threading.Timer(0.3, fake.user_sends, args=(USER, "hello"))

    async def scenario() -> float:
        async with bot_for(fake) as bot:
            started = time.monotonic()
            timer.start()
            updates = await bot.get_updates(timeout=5)
            assert [u.message.text for u in updates if u.message] == ["hello"]
            return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    timer.join()
    assert 0.25 <= elapsed < 2


def test_offset_and_limit(fake: FakeTelegram) -> None:
    for n in range(3):
        fake.user_sends(USER, f"m{n}")

    async def scenario() -> None:
        async with bot_for(fake) as bot:
            first = await bot.get_updates(limit=2)
            assert [u.update_id for u in first] == [1, 2]
            again = await bot.get_updates()  # nothing confirmed yet
            assert [u.update_id for u in again] == [1, 2, 3]
            rest = await bot.get_updates(offset=3)
            assert [u.update_id for u in rest] == [3]
            assert [u["update_id"] for u in fake.pending_updates] == [3]
            assert await bot.get_updates(offset=4, timeout=0) == ()

    asyncio.run(scenario())
    assert fake.pending_updates == []


def test_webhook_blocks_polling_until_deleted(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot_for(fake) as bot:
            assert await bot.set_webhook("https://petition.example.org/telegram/webhook",
                                         secret_token="s3cret_token-1",
                                         allowed_updates=["message", "callback_query"])
            info = await bot.get_webhook_info()
            assert info.url == "https://petition.example.org/telegram/webhook"
            assert info.allowed_updates == ("message", "callback_query")
            with pytest.raises(Conflict, match="webhook is active"):
                await bot.get_updates(timeout=1)
            assert await bot.delete_webhook()
            assert (await bot.get_webhook_info()).url == ""
            assert await bot.get_updates() == ()

    asyncio.run(scenario())
    assert fake.webhook is None
    assert [c["status"] for c in fake.calls_to("getUpdates")] == [409, 200]


def test_webhook_is_recorded(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot_for(fake) as bot:
            await bot.set_webhook("https://petition.example.org/telegram/webhook",
                                  secret_token="s3cret", allowed_updates=["message"])

    asyncio.run(scenario())
    assert fake.webhook is not None
    assert fake.webhook["url"] == "https://petition.example.org/telegram/webhook"
    assert fake.webhook["secret_token"] == "s3cret"
    assert fake.webhook["allowed_updates"] == ["message"]
    status, body = raw_post(fake, "setWebhook", {"url": "https://x.example", "secret_token": "a b"})
    assert status == 400 and "secret token" in body["description"]


def test_a_second_poller_terminates_the_first(fake: FakeTelegram) -> None:
    results: list[tuple[int, dict[str, Any]]] = []
    first = threading.Thread(target=lambda: results.append(
        raw_post(fake, "getUpdates", {"timeout": 10})))
    first.start()
    fake.wait_for(lambda f: f.calls_to("getUpdates"))
    assert raw_post(fake, "getUpdates", {"timeout": 0}) == (200, {"ok": True, "result": []})
    first.join(5)
    assert results[0][0] == 409
    assert "terminated by other getUpdates request" in results[0][1]["description"]


def test_builders_output_parses_with_de_json(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot_for(fake) as bot:
            await bot.send_message(USER, "Sign?", reply_markup=KEYBOARD)
            text = Update.de_json(fake.user_sends(USER, "hi", queue=False), bot)
            press = Update.de_json(fake.user_presses(USER, "read", queue=False), bot)
            own = Update.de_json(fake.user_shares_contact(USER, "447700900123", queue=False), bot)
            other = Update.de_json(
                fake.user_shares_contact(USER, "+447700900999", contact_user_id=8, queue=False),
                bot)
            assert text.message is not None and text.message.text == "hi"
            assert text.message.entities == ()
            assert press.callback_query is not None and press.callback_query.data == "read"
            assert press.callback_query.from_user.id == USER
            assert own.message is not None and own.message.contact is not None
            assert own.message.from_user is not None and own.message.from_user.id == USER
            assert own.message.contact.user_id == USER
            assert other.message is not None and other.message.contact is not None
            assert other.message.contact.user_id == 8
            assert len({text.update_id, press.update_id, own.update_id, other.update_id}) == 4

    asyncio.run(scenario())
    assert fake.pending_updates == []


def test_pressing_with_no_bot_message_is_an_error(fake: FakeTelegram) -> None:
    with pytest.raises(ValueError, match="no button to press"):
        fake.user_presses(USER, "sign")


def test_callback_answer_and_edits(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot_for(fake) as bot:
            sent = await bot.send_message(USER, "Sign?", reply_markup=KEYBOARD)
            press = Update.de_json(fake.user_presses(USER, "sign:planets"), bot)
            assert press.callback_query is not None
            assert await press.callback_query.answer("Signed!")
            edited = await bot.edit_message_text("Signed.", chat_id=USER,
                                                 message_id=sent.message_id)
            assert isinstance(edited, Message) and edited.text == "Signed."
            assert edited.reply_markup is None
            with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
                await bot.edit_message_reply_markup(chat_id=USER, message_id=sent.message_id,
                                                    reply_markup=None)
            with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
                await bot.edit_message_text("x", chat_id=USER, message_id=999)
            with pytest.raises(BadRequest, match=r"(?i)query id is invalid"):
                await bot.answer_callback_query("nonsense")

    asyncio.run(scenario())
    assert fake.answered_callbacks[0]["text"] == "Signed!"
    assert [e["method"] for e in fake.edits] == ["editMessageText"]
    assert fake.edits[0]["chat_id"] == USER and fake.edits[0]["text"] == "Signed."


def test_edit_reply_markup_removes_the_keyboard(fake: FakeTelegram) -> None:
    async def scenario() -> None:
        async with bot_for(fake) as bot:
            sent = await bot.send_message(USER, "Sign?", reply_markup=KEYBOARD)
            edited = await bot.edit_message_reply_markup(chat_id=USER,
                                                         message_id=sent.message_id)
            assert not isinstance(edited, bool) and edited.reply_markup is None

    asyncio.run(scenario())
    assert fake.edits[0]["method"] == "editMessageReplyMarkup"
    assert fake.edits[0]["reply_markup"] is None
    # the next press shows the message as it is now: without its keyboard
    assert "reply_markup" not in fake.user_presses(USER, "sign")["callback_query"]["message"]


# -- inspection and lifecycle ------------------------------------------------------------------

def test_wait_for_explains_a_timeout(fake: FakeTelegram) -> None:
    raw_post(fake, "sendMessage", {"chat_id": USER, "text": "only this"})
    with pytest.raises(AssertionError, match="reply to 8") as caught:
        fake.wait_for(lambda f: f.messages_to(8), timeout=0.2, message="reply to 8")
    assert "only this" in str(caught.value)
    assert fake.wait_for(lambda f: f.messages_to(USER))[0]["text"] == "only this"


def test_reset_forgets_everything_but_keeps_ids_increasing(fake: FakeTelegram) -> None:
    fake.user_sends(USER, "one")
    fake.block(USER)
    raw_post(fake, "sendMessage", {"chat_id": USER, "text": "x"})
    fake.reset()
    assert (fake.sent, fake.calls, fake.pending_updates, fake.webhook) == ([], [], [], None)
    assert raw_post(fake, "sendMessage", {"chat_id": USER, "text": "x"})[0] == 200
    assert fake.user_sends(USER, "two")["update_id"] == 2


def test_stop_wakes_a_long_poll_and_closes_cleanly() -> None:
    fake = FakeTelegram().start()
    results: list[tuple[int, dict[str, Any]]] = []
    poller = threading.Thread(target=lambda: results.append(
        raw_post(fake, "getUpdates", {"timeout": 30})))
    poller.start()
    fake.wait_for(lambda f: f.calls_to("getUpdates"))
    started = time.monotonic()
    fake.stop()
    poller.join(5)
    assert not poller.is_alive()
    assert time.monotonic() - started < 2
    assert results == [(200, {"ok": True, "result": []})]
    fake.stop()  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("fake-telegram")]


# -- python-telegram-bot's Application, polling ------------------------------------------------

def test_application_polling_receives_a_message_and_a_press(fake: FakeTelegram) -> None:
    seen: list[str] = []

    async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        seen.append(f"start {context.args}")
        await update.message.reply_text("Sign?", reply_markup=KEYBOARD)

    async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.message.text is not None
        seen.append(update.message.text)
        await update.message.reply_text(f"You said {update.message.text}")

    async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None
        seen.append(query.data)
        await query.answer()
        await query.edit_message_reply_markup(None)

    async def scenario() -> None:
        app = Application.builder().token(fake.token).base_url(fake.base_url).build()
        app.add_handler(CommandHandler("start", on_start))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
        app.add_handler(CallbackQueryHandler(on_press))
        updater = app.updater
        assert updater is not None
        await app.initialize()
        try:
            await updater.start_polling(timeout=dtm.timedelta(seconds=1), poll_interval=0)
            await app.start()
            fake.user_sends(USER, "hello")
            await asyncio.to_thread(fake.wait_for, lambda f: f.messages_to(USER))
            fake.user_sends(USER, "/start planets_r3")
            await asyncio.to_thread(fake.wait_for, lambda f: len(f.messages_to(USER)) == 2)
            fake.user_presses(USER, "sign:planets")
            await asyncio.to_thread(fake.wait_for, lambda f: f.edits)
        finally:
            if updater.running:
                await updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()

    asyncio.run(scenario())
    assert seen == ["hello", "start ['planets_r3']", "sign:planets"]
    assert [s["text"] for s in fake.messages_to(USER)] == ["You said hello", "Sign?"]
    assert len(fake.answered_callbacks) == 1
    assert fake.edits[0]["method"] == "editMessageReplyMarkup"
    assert fake.calls_to("deleteWebhook")  # start_polling always removes the webhook first
    assert fake.pending_updates == []  # the updater confirmed what it fetched when stopping
