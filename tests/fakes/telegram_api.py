"""A fake Telegram Bot API server: a real HTTP server on loopback for python-telegram-bot.

python-telegram-bot (PTB) talks to it through its own httpx client, so tests exercise the real
request encoding, response parsing and error mapping. Point PTB at it with
``Bot(token, base_url=fake.base_url)`` or ``ApplicationBuilder().base_url(fake.base_url)``;
requests then arrive as ``POST /bot<token>/<method>``. ``FakeTelegram(port=N)`` listens on a
port chosen beforehand: point the bot at it, start the fake later, and Telegram "comes back".

PTB 22.8 sends parameters as ``application/x-www-form-urlencoded`` (``multipart/form-data`` when
a file is uploaded): string values are sent as they are, every other value (ints, bools, lists,
objects such as ``reply_markup``) is JSON-encoded inside the form field. The server also accepts
``application/json`` bodies and query strings, as Telegram does.

    with FakeTelegram() as fake:
        fake.user_sends(7, "/start abc")
        ...  # run the bot against fake.base_url
        fake.wait_for(lambda f: f.messages_to(7))
        assert "Welcome" in fake.sent[-1]["text"]

Behaviour that follows Telegram (and that the bot must cope with):
- ``getUpdates`` long-polls; ``offset`` confirms (drops) earlier updates; a negative offset keeps
  only the last ``-offset`` updates; a second concurrent ``getUpdates`` ends the first one with
  409, and any ``getUpdates`` while a webhook is set gets 409.
- Editing a message the bot never sent, or editing it to the same content, is a 400.
- Answering an unknown callback query id is a 400.
- ``callback_data`` longer than 64 bytes is a 400 (BUTTON_DATA_INVALID).
- Method names are case-insensitive.
Deliberately lenient: any chat id may be messaged (no "chat not found"), webhook URLs are not
checked (nothing is delivered to them: a webhook test posts the update dicts itself).
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.fakes.loopback import Handler, LoopbackFake, LoopbackServer

JSON = dict[str, Any]

#: Parameters Telegram reads as plain strings; every other form field is JSON-decoded if it can be.
STRING_FIELDS = frozenset({
    "text", "parse_mode", "caption", "url", "secret_token", "callback_query_id",
    "inline_message_id", "ip_address", "data", "description", "short_description", "name",
    "title", "phone_number", "first_name", "last_name", "vcard", "emoji", "action",
    "business_connection_id", "message_effect_id", "language_code", "next_offset",
    "switch_pm_text", "switch_pm_parameter", "question", "sticker", "photo", "document",
    "audio", "video", "voice", "animation", "thumbnail", "certificate", "custom_title",
})

METHODS = (
    "getMe", "getUpdates", "sendMessage", "answerCallbackQuery", "editMessageText",
    "editMessageReplyMarkup", "setWebhook", "deleteWebhook", "getWebhookInfo", "close", "logOut",
    "setMyCommands", "getMyCommands", "deleteMyCommands", "sendChatAction", "deleteMessage",
)
_CANONICAL = {name.lower(): name for name in METHODS}
_PATH = re.compile(r"^/bot(?P<token>[^/]*)/(?P<method>[^/]+)/?$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_INT = re.compile(r"^-?\d+$")

CONFLICT_WEBHOOK = ("Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first")
CONFLICT_POLLER = ("Conflict: terminated by other getUpdates request; "
                   "make sure that only one bot instance is running")
BLOCKED = "Forbidden: bot was blocked by the user"
MIGRATED = "Bad Request: group chat was upgraded to a supergroup chat"
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message")
BAD_QUERY = "Bad Request: query is too old and response timeout expired or query ID is invalid"
MAX_MESSAGE_LENGTH = 4096
MAX_CALLBACK_DATA = 64
UPDATE_TYPES = ("message", "edited_message", "callback_query", "channel_post", "inline_query",
                "my_chat_member", "chat_member", "message_reaction")


class ApiError(Exception):
    """Raised inside a method handler: becomes ``{"ok": false, ...}`` with this HTTP status."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(what: str) -> ApiError:
    return ApiError(400, f"Bad Request: {what}")


# ---------------------------------------------------------------------------------------------
# Request body decoding
# ---------------------------------------------------------------------------------------------

def decode_value(name: str, value: str) -> Any:
    """A form field as Telegram reads it: chat ids as int, JSON for non-string parameters."""
    if name in STRING_FIELDS:
        return value
    if name == "chat_id" or name == "from_chat_id":
        return int(value) if _INT.match(value) else value  # "@channelusername" stays a string
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_params(content_type: str, body: bytes, query: str = "") -> JSON:
    """Decode a Bot API request (query string, urlencoded form, multipart form or JSON)."""
    params: JSON = {name: decode_value(name, value)
                    for name, value in parse_qsl(query, keep_blank_values=True)}
    mime = content_type.split(";")[0].strip().lower()
    if not body:
        return params
    if mime == "application/json":
        data = json.loads(body)
        if not isinstance(data, dict):
            raise _bad_request("JSON body must be an object")
        for name, value in data.items():
            if name == "reply_markup" and isinstance(value, str):
                value = json.loads(value)
            params[name] = value
    elif mime == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            raw = payload if isinstance(payload, bytes) else b""
            filename = part.get_filename()
            if filename is not None:
                params[name] = {"filename": filename, "content_type": part.get_content_type(),
                                "size": len(raw), "content": raw}
            else:
                params[name] = decode_value(name, raw.decode("utf-8"))
    else:  # application/x-www-form-urlencoded (and, leniently, anything else)
        for name, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
            params[name] = decode_value(name, value)
    return params


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------

class _Handler(Handler):
    server: LoopbackServer

    def serve(self, method: str) -> None:
        url = urlsplit(self.path)
        status, payload = self.server.fake.handle_request(
            url.path, url.query, self.headers.get("Content-Type", ""), self.body())
        self.reply(status, payload, {"Content-Type": "application/json"})


# ---------------------------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------------------------

class FakeTelegram(LoopbackFake):
    """A fake api.telegram.org for one bot token. All state is guarded by one lock."""

    handler = _Handler

    def __init__(self, token: str = "123456:TEST-TOKEN",
                 bot_username: str = "planets_petition_bot",
                 bot_first_name: str = "Petition Bot", *, port: int = 0) -> None:
        self.token = token
        self.requested_port = port  # 0: any free port (a fixed one: Telegram coming back)
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        head = token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 123456
        self._cond = threading.Condition(threading.RLock())  # the one lock around all state
        self._stopping = False
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._poll_generation = 0
        self._handlers: dict[str, Callable[[JSON], Any]] = {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "close": lambda params: True,
            "logOut": lambda params: True,
            "setMyCommands": lambda params: True,
            "deleteMyCommands": lambda params: True,
            "getMyCommands": lambda params: [],
            "sendChatAction": self._send_chat_action,
            "deleteMessage": self._delete_message,
        }
        self._clear()

    def _clear(self) -> None:
        with self._cond:
            self._pending: list[JSON] = []
            self._sent: list[JSON] = []
            self._calls: list[JSON] = []
            self._answered: list[JSON] = []
            self._edits: list[JSON] = []
            self._webhook: JSON | None = None
            self._allowed_updates: list[str] = []
            self._users: dict[int, str] = {}
            self._messages: dict[tuple[int | str, int], JSON] = {}
            self._last_bot_message: dict[int | str, JSON] = {}
            self._callback_queries: set[str] = set()
            self._blocked: set[int | str] = set()
            self._rate_limits: dict[int | str, list[int]] = {}
            self._migrations: dict[int | str, int] = {}
            self._failures: dict[str, list[Any]] = {}
            self._cond.notify_all()

    # -- lifecycle (start, stop, with, port: LoopbackFake) ------------------------------------

    def opening(self) -> None:
        self._stopping = False

    def closing(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()  # wake long polls: they answer with no updates

    @property
    def base_url(self) -> str:
        """For ``Bot(base_url=...)``: PTB appends the token and ``/<method>``."""
        return f"http://127.0.0.1:{self.port}/bot"

    # -- error injection --------------------------------------------------------------------

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sends and edits to this chat get 403."""
        with self._cond:
            self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        with self._cond:
            self._blocked.discard(chat_id)

    def rate_limit(self, chat_id: int, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` sendMessage calls to this chat get 429 with ``retry_after``."""
        with self._cond:
            self._rate_limits[chat_id] = [retry_after, times]

    def migrate(self, chat_id: int, new_chat_id: int) -> None:
        """The group became a supergroup: sends and edits to the old id get 400 + new id."""
        with self._cond:
            self._migrations[chat_id] = new_chat_id

    def fail_next(self, method: str, status: int = 502, times: int = 1,
                  description: str | None = None) -> None:
        """The next ``times`` calls of ``method`` (any chat) fail with HTTP ``status``."""
        if description is None:
            try:
                description = HTTPStatus(status).phrase
            except ValueError:
                description = "Internal Server Error"
        with self._cond:
            self._failures[self._canonical(method)] = [status, times, description]

    # -- the supporter's side: building updates ---------------------------------------------

    def user_sends(self, user_id: int, text: str, first_name: str = "Amira", *,
                   queue: bool = True) -> JSON:
        """A private text message from ``user_id``; "/cmd ..." gets a bot_command entity."""
        with self._cond:
            self._users[user_id] = first_name
            message = self._user_message(user_id)
            message["text"] = text
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                message["entities"] = [{"offset": 0, "length": len(command),
                                        "type": "bot_command"}]
            return self._make_update({"message": message}, queue)

    def user_presses(self, user_id: int, callback_data: str, message_id: int | None = None, *,
                     queue: bool = True) -> JSON:
        """A press on a button of the bot's last message to this user (or of ``message_id``)."""
        with self._cond:
            if message_id is None:
                message = self._last_bot_message.get(user_id)
            else:
                message = self._messages.get((user_id, message_id))
            if message is None:
                raise ValueError(f"the bot has sent no message {message_id or ''} to chat "
                                 f"{user_id}, so there is no button to press")
            query_id = f"{user_id}{next(self._callback_ids):08d}"
            self._callback_queries.add(query_id)
            callback = {"id": query_id, "from": self._user(user_id),
                        "message": copy.deepcopy(message),
                        "chat_instance": str(-(abs(user_id) * 7919 + self.bot_id)),
                        "data": callback_data}
            return self._make_update({"callback_query": callback}, queue)

    def user_shares_contact(self, user_id: int, phone_number: str,
                            contact_user_id: int | None = None, *,
                            first_name: str | None = None, queue: bool = True) -> JSON:
        """A contact message; by default the user's own (the request_contact button)."""
        with self._cond:
            owner = user_id if contact_user_id is None else contact_user_id
            message = self._user_message(user_id)
            name = first_name or (self._users.get(owner, "Amira") if owner == user_id else "Sam")
            message["contact"] = {"phone_number": phone_number, "first_name": name,
                                  "user_id": owner}
            return self._make_update({"message": message}, queue)

    def queue_update(self, update: JSON) -> JSON:
        """Queue a hand-built update (an ``update_id`` is assigned if missing)."""
        with self._cond:
            update = dict(update)
            if "update_id" not in update:
                update["update_id"] = next(self._update_ids)
            self._pending.append(update)
            self._cond.notify_all()
            return update

    # -- inspection -------------------------------------------------------------------------

    @property
    def sent(self) -> list[JSON]:
        """Delivered sendMessage calls: chat_id, text, parse_mode, reply_markup, message_id."""
        with self._cond:
            return list(self._sent)

    @property
    def calls(self) -> list[JSON]:
        """Every request: method, params, time (time.monotonic() on arrival), status."""
        with self._cond:
            return list(self._calls)

    @property
    def answered_callbacks(self) -> list[JSON]:
        with self._cond:
            return list(self._answered)

    @property
    def edits(self) -> list[JSON]:
        with self._cond:
            return list(self._edits)

    @property
    def webhook(self) -> JSON | None:
        with self._cond:
            return dict(self._webhook) if self._webhook is not None else None

    @property
    def pending_updates(self) -> list[JSON]:
        """Queued updates not yet confirmed by a getUpdates offset."""
        with self._cond:
            return list(self._pending)

    def messages_to(self, chat_id: int) -> list[JSON]:
        with self._cond:
            return [sent for sent in self._sent if sent["chat_id"] == chat_id]

    def calls_to(self, method: str) -> list[JSON]:
        name = self._canonical(method)
        with self._cond:
            return [call for call in self._calls if call["method"] == name]

    def wait_for(self, predicate: Callable[[FakeTelegram], Any], timeout: float = 5,
                 message: str = "") -> Any:
        """Poll until ``predicate(self)`` is truthy and return its value; else AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{message or 'condition not met'} within {timeout}s\n{self.describe()}")
            time.sleep(0.01)

    def describe(self) -> str:
        """A short account of what happened, for assertion messages."""
        with self._cond:
            calls = [f"{c['method']}->{c['status']}" for c in self._calls[-15:]]
            sent = [f"{s['chat_id']}: {s['text'][:60]!r}" for s in self._sent[-10:]]
            return (f"last calls: {', '.join(calls) or 'none'}\n"
                    f"last messages sent: {'; '.join(sent) or 'none'}\n"
                    f"pending updates: {len(self._pending)}; webhook: {self._webhook}")

    def reset(self) -> None:
        """Forget recorded calls, messages, queued updates, webhook and injected errors.

        update_id and message_id keep increasing, so a running poller's offset stays valid."""
        self._clear()

    # -- request handling (server threads) --------------------------------------------------

    @staticmethod
    def _canonical(method: str) -> str:
        return _CANONICAL.get(method.lower(), method)

    def handle_request(self, path: str, query: str, content_type: str,
                       body: bytes) -> tuple[int, JSON]:
        arrived = time.monotonic()
        match = _PATH.match(path)
        if match is None:
            return 404, ApiError(404, "Not Found").payload()
        method = self._canonical(match["method"])
        try:
            params = parse_params(content_type, body, query)
        except (ValueError, UnicodeDecodeError):
            params = {"_raw": body.decode("utf-8", "replace")}
        call: JSON = {"method": method, "params": params, "time": arrived, "status": None}
        with self._cond:
            self._calls.append(call)
        try:
            if "_raw" in params:
                raise _bad_request("can't parse request body")
            result = self._dispatch(match["token"], method, params)
            status, payload = 200, {"ok": True, "result": result}
        except ApiError as error:
            status, payload = error.status, error.payload()
        except Exception as error:  # a bug in the fake: say so rather than drop the connection
            traceback.print_exc()
            status, payload = 500, ApiError(500, f"Internal Server Error: fake crashed: "
                                                 f"{error!r}").payload()
        with self._cond:
            call["status"] = status
        return status, payload

    def _dispatch(self, token: str, method: str, params: JSON) -> Any:
        if token != self.token:
            raise ApiError(401, "Unauthorized")
        if method != "getUpdates" and method not in self._handlers:
            raise ApiError(404, "Not Found: method not found")
        with self._cond:
            failure = self._failures.get(method)
            if failure is not None:
                failure[1] -= 1
                if failure[1] <= 0:
                    del self._failures[method]
                raise ApiError(failure[0], failure[2])
        if method == "getUpdates":
            return self._get_updates(params)
        with self._cond:
            return self._handlers[method](params)

    # -- methods ----------------------------------------------------------------------------

    def _get_me(self, params: JSON) -> JSON:
        return {**self._bot_user(), "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False, "can_connect_to_business": False,
                "has_main_web_app": False}

    def _get_updates(self, params: JSON) -> list[JSON]:
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        allowed = params.get("allowed_updates")
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._webhook is not None:
                raise ApiError(409, CONFLICT_WEBHOOK)
            if isinstance(allowed, list):
                self._allowed_updates = [str(kind) for kind in allowed]
            self._poll_generation += 1
            generation = self._poll_generation
            self._cond.notify_all()  # an older poll still waiting is terminated
            if offset > 0:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
            elif offset < 0:
                self._pending = self._pending[offset:]
            while True:
                ready = [u for u in self._pending if self._is_allowed(u)][:limit]
                if ready or self._stopping:
                    return copy.deepcopy(ready)
                if self._poll_generation != generation:
                    raise ApiError(409, CONFLICT_POLLER)
                if self._webhook is not None:
                    raise ApiError(409, CONFLICT_WEBHOOK)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def _is_allowed(self, update: JSON) -> bool:
        if not self._allowed_updates:
            return True
        return any(kind in update for kind in self._allowed_updates)

    def _send_message(self, params: JSON) -> JSON:
        chat_id = self._chat_id(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        reply_markup = self._reply_markup(params)
        self._check_chat(chat_id, sending=True)
        message = self._bot_message(chat_id, text, reply_markup)
        self._sent.append({"chat_id": chat_id, "text": text,
                           "parse_mode": params.get("parse_mode"),
                           "reply_markup": reply_markup, "message_id": message["message_id"]})
        self._cond.notify_all()
        return message

    def _answer_callback_query(self, params: JSON) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._callback_queries:
            raise ApiError(400, BAD_QUERY)
        self._answered.append({"callback_query_id": query_id, "text": params.get("text"),
                               "show_alert": params.get("show_alert"), "url": params.get("url"),
                               "cache_time": params.get("cache_time")})
        self._cond.notify_all()
        return True

    def _edit_message_text(self, params: JSON) -> JSON | bool:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        return self._edit("editMessageText", params, text=text)

    def _edit_message_reply_markup(self, params: JSON) -> JSON | bool:
        return self._edit("editMessageReplyMarkup", params, text=None)

    def _edit(self, method: str, params: JSON, text: str | None) -> JSON | bool:
        reply_markup = self._reply_markup(params)
        if reply_markup is not None and "inline_keyboard" not in reply_markup:
            raise _bad_request("inline keyboard expected")
        record: JSON = {"method": method, "chat_id": params.get("chat_id"),
                        "message_id": params.get("message_id"),
                        "inline_message_id": params.get("inline_message_id"),
                        "text": text, "parse_mode": params.get("parse_mode"),
                        "reply_markup": reply_markup}
        if params.get("inline_message_id"):
            self._edits.append(record)
            self._cond.notify_all()
            return True
        chat_id = self._chat_id(params)
        record["chat_id"] = chat_id
        self._check_chat(chat_id, sending=False)
        key = (chat_id, int(params.get("message_id") or 0))
        old = self._messages.get(key)
        if old is None:
            raise _bad_request("message to edit not found")
        new = dict(old)
        if text is not None:
            new["text"] = text
        new.pop("reply_markup", None)
        if reply_markup:
            new["reply_markup"] = reply_markup
        if new == old:
            raise ApiError(400, NOT_MODIFIED)
        new["edit_date"] = int(time.time())
        self._messages[key] = new
        if self._last_bot_message.get(chat_id, {}).get("message_id") == key[1]:
            self._last_bot_message[chat_id] = new
        self._edits.append(record)
        self._cond.notify_all()
        return new

    def _set_webhook(self, params: JSON) -> bool:
        url = params.get("url")
        if url is None:
            raise _bad_request("parameter \"url\" is required")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET.match(str(secret)):
            raise _bad_request("secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._pending = []
        if not url:
            self._webhook = None
            return True
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        self._webhook = {
            "url": url, "secret_token": secret,
            "allowed_updates": allowed if isinstance(allowed, list) else None,
            "max_connections": params.get("max_connections"),
            "ip_address": params.get("ip_address"),
            "drop_pending_updates": params.get("drop_pending_updates"),
            "has_custom_certificate": "certificate" in params,
        }
        self._cond.notify_all()  # a waiting long poll now conflicts
        return True

    def _delete_webhook(self, params: JSON) -> bool:
        if params.get("drop_pending_updates"):
            self._pending = []
        self._webhook = None
        self._cond.notify_all()
        return True

    def _get_webhook_info(self, params: JSON) -> JSON:
        info: JSON = {"url": "", "has_custom_certificate": False,
                      "pending_update_count": len(self._pending)}
        if self._webhook is not None:
            info["url"] = self._webhook["url"]
            info["has_custom_certificate"] = self._webhook["has_custom_certificate"]
            info["max_connections"] = self._webhook["max_connections"] or 40
            if self._webhook["ip_address"]:
                info["ip_address"] = self._webhook["ip_address"]
            if self._allowed_updates:
                info["allowed_updates"] = list(self._allowed_updates)
        return info

    def _send_chat_action(self, params: JSON) -> bool:
        self._check_chat(self._chat_id(params), sending=False)
        return True

    def _delete_message(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        key = (chat_id, int(params.get("message_id") or 0))
        if self._messages.pop(key, None) is None:
            raise _bad_request("message to delete not found")
        return True

    # -- helpers (called with the lock held) ------------------------------------------------

    def _chat_id(self, params: JSON) -> int | str:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if isinstance(chat_id, bool) or not isinstance(chat_id, int | str):
            raise _bad_request("chat not found")
        return chat_id

    def _reply_markup(self, params: JSON) -> JSON | None:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                    raise _bad_request("BUTTON_DATA_INVALID")
        return markup

    def _check_chat(self, chat_id: int | str, sending: bool) -> None:
        if chat_id in self._blocked:
            raise ApiError(403, BLOCKED)
        if chat_id in self._migrations:
            raise ApiError(400, MIGRATED, {"migrate_to_chat_id": self._migrations[chat_id]})
        limit = self._rate_limits.get(chat_id)
        if sending and limit is not None:
            retry_after, times = limit
            if times <= 1:
                del self._rate_limits[chat_id]
            else:
                limit[1] = times - 1
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}",
                           {"retry_after": retry_after})

    def _bot_user(self) -> JSON:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_first_name,
                "username": self.bot_username}

    def _user(self, user_id: int) -> JSON:
        return {"id": user_id, "is_bot": False, "first_name": self._users.get(user_id, "Amira"),
                "language_code": "en"}

    def _chat(self, chat_id: int | str) -> JSON:
        if isinstance(chat_id, str):
            return {"id": -1001000000000, "type": "channel", "title": chat_id.lstrip("@"),
                    "username": chat_id.lstrip("@")}
        if chat_id > 0:
            return {"id": chat_id, "type": "private",
                    "first_name": self._users.get(chat_id, "Amira")}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": "Petition supporters"}

    def _user_message(self, user_id: int) -> JSON:
        return {"message_id": next(self._message_ids), "from": self._user(user_id),
                "chat": self._chat(user_id), "date": int(time.time())}

    def _bot_message(self, chat_id: int | str, text: str, reply_markup: JSON | None) -> JSON:
        message: JSON = {"message_id": next(self._message_ids), "from": self._bot_user(),
                         "chat": self._chat(chat_id), "date": int(time.time()), "text": text}
        if reply_markup and "inline_keyboard" in reply_markup:
            message["reply_markup"] = reply_markup  # Telegram echoes only inline keyboards
        self._messages[(chat_id, message["message_id"])] = message
        self._last_bot_message[chat_id] = message
        return message

    def _make_update(self, body: JSON, queue: bool) -> JSON:
        update = {"update_id": next(self._update_ids), **body}
        if queue:
            self._pending.append(update)
            self._cond.notify_all()
        return copy.deepcopy(update)


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    """A running FakeTelegram; import it into a conftest to use it as a fixture."""
    with FakeTelegram() as fake:
        yield fake
