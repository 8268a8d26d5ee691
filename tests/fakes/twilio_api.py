"""A fake Twilio REST API (the Messages resource): a real HTTP server on loopback.

twilio-python talks to it through its own ``requests`` session, so tests exercise the real
form encoding, basic authentication, response parsing and error mapping
(``TwilioRestException`` with ``.status`` and ``.code``). Point a client at it with

    client = Client(sid, token, http_client=TwilioHttpClient(timeout=5))
    client.api.base_url = fake.base_url        # platform-facts B8, way 2

or, for the app, ``TWILIO_API_BASE_URL`` / ``Settings.twilio_api_base_url``. Requests then
arrive as ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

    with FakeTwilio() as fake:
        fake.error_for("+447700900123", 400, 21610)         # unsubscribed: one refusal
        fake.error_for("whatsapp:+447700900456", 400, 63016) # free-form outside the window
        fake.hang_for("+447700900789", 5)                    # provoke a client read timeout
        ...  # send through the app
        fake.wait_for(lambda f: len(f.sent) == 3)

What follows Twilio (Message resource of twilio_api_v2010.json; platform-facts B5-B7):
- 201 with the Message JSON (``sid`` "SM" + 32 hex, ``status`` "queued", or "accepted" when
  sent through a Messaging Service, ``num_segments`` by GSM-7/UCS-2 rules, RFC 2822 dates,
  ``direction`` "outbound-api", ``uri`` and ``subresource_uris``).
- Errors in Twilio's legacy JSON: ``{"code", "message", "more_info", "status"}``; a bad or
  missing basic auth, or an account other than the authenticated one, is 401/20003.
- Parameter checks Twilio makes: To required (21604), From or MessagingServiceSid (21603),
  Body, MediaUrl or ContentSid (21602), Body at most 1,600 characters (21617), From and To on
  the same channel (21910), ContentVariables valid JSON (21656).
- An injected 63016 (WhatsApp free-form outside the 24-hour window) refuses only requests
  without ``ContentSid``: a template request to the same number is accepted.
- A hung request (``hang_for``) is recorded and accepted as sent: the client timed out, but
  Twilio got it, which is why the app must mark such a send ``unknown`` and never resend it.
Deliberately lenient: any E.164-looking number may be messaged; no webhooks are sent (a
status-callback test posts them itself, signed).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.fakes.loopback import Handler, LoopbackFake, LoopbackServer

JSON = dict[str, Any]

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
API_VERSION = "2010-04-01"
MAX_BODY = 1600

#: Twilio's own wording for the errors tests inject (docs: https://www.twilio.com/docs/errors).
MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
           "'To' number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21656: "The ContentVariables Parameter is invalid.",
    21910: "Invalid 'From' and 'To' pair. 'From' and 'To' should be of the same channel.",
    63016: "Failed to send freeform message because you are outside the allowed window. If "
           "you are using WhatsApp, please use a Message Template.",
}

# GSM 03.38: characters outside these switch the whole message to UCS-2.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENSION = frozenset("^{}\\[~]|€")


def num_segments(body: str) -> int:
    """SMS segments as Twilio bills them: GSM-7 160/153, UCS-2 70/67 (UTF-16 units)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in body):
        length = sum(2 if c in _GSM_EXTENSION else 1 for c in body)
        single, part = 160, 153
    else:
        length = sum(2 if ord(c) > 0xFFFF else 1 for c in body)
        single, part = 70, 67
    return 1 if length <= single else -(-length // part)


def error_body(status: int, code: int, message: str | None = None) -> JSON:
    """Twilio's legacy error JSON (raised by twilio-python as TwilioRestException)."""
    return {"code": code, "message": message or MESSAGES.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


class TwilioError(Exception):
    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        super().__init__(message or MESSAGES.get(code, "Error"))
        self.status, self.code, self.message = status, code, message

    def payload(self) -> JSON:
        return error_body(self.status, self.code, self.message)


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------

class _Handler(Handler):
    server: LoopbackServer

    def serve(self, method: str) -> None:
        status, payload = self.server.fake.handle_request(
            method, urlsplit(self.path).path, self.headers.get("Content-Type", ""),
            self.headers.get("Authorization", ""), self.body())
        self.reply(status, payload, {"Content-Type": "application/json; charset=utf-8",
                                     "Twilio-Request-Id": "RQ" + secrets.token_hex(16)})


# ---------------------------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------------------------

class FakeTwilio(LoopbackFake):
    """A fake api.twilio.com Messages resource for one account. All state under one lock."""

    handler = _Handler

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN, *,
                 port: int = 0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requested_port = port
        self._cond = threading.Condition(threading.RLock())
        self._released = threading.Event()  # set on stop: hung requests answer at once
        self._clear()

    def _clear(self) -> None:
        with self._cond:
            self._requests: list[JSON] = []
            self._messages: dict[str, JSON] = {}
            self._errors: dict[str, list[list[Any]]] = {}
            self._hangs: dict[str, list[float]] = {}
            self._cond.notify_all()

    # -- lifecycle (start, stop, with, port: LoopbackFake) ------------------------------------

    def opening(self) -> None:
        self._released.clear()

    def closing(self) -> None:
        self._released.set()

    @property
    def base_url(self) -> str:
        """For ``client.api.base_url``: the client appends ``/2010-04-01/Accounts/...``."""
        return f"http://127.0.0.1:{self.port}"

    # -- error injection --------------------------------------------------------------------

    def error_for(self, to: str, status: int, code: int, message: str | None = None,
                  times: int = 1) -> None:
        """The next ``times`` sends to ``to`` (as passed to Twilio, e.g. "whatsapp:+44...")
        are refused with HTTP ``status`` and Twilio error ``code``. Code 63016 refuses only
        free-form messages (no ContentSid); a template request is accepted and uses no turn."""
        with self._cond:
            self._errors.setdefault(to, []).append([status, code, message, times])

    def hang_for(self, to: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` sends to ``to`` are accepted but answered only after
        ``seconds`` (or when the fake stops): a client with a shorter timeout gives up."""
        with self._cond:
            self._hangs.setdefault(to, []).extend([seconds] * times)

    # -- inspection -------------------------------------------------------------------------

    @property
    def requests(self) -> list[JSON]:
        """Every request: time (time.monotonic() on arrival), method, path, status, to,
        from, messaging_service_sid, body, content_sid, content_variables, status_callback,
        params (the whole form), sid (when accepted), error (the code, when refused)."""
        with self._cond:
            return [dict(r) for r in self._requests]

    @property
    def sent(self) -> list[JSON]:
        """The requests Twilio accepted (201), in arrival order."""
        with self._cond:
            return [dict(r) for r in self._requests if r["status"] == 201]

    def requests_to(self, to: str) -> list[JSON]:
        with self._cond:
            return [dict(r) for r in self._requests if r["to"] == to]

    def sent_to(self, to: str) -> list[JSON]:
        with self._cond:
            return [dict(r) for r in self._requests if r["to"] == to and r["status"] == 201]

    def message(self, sid: str) -> JSON:
        """The Message resource as it was returned when created."""
        with self._cond:
            return dict(self._messages[sid])

    def wait_for(self, predicate: Callable[[FakeTwilio], Any], timeout: float = 5,
                 message: str = "") -> Any:
        """Poll until ``predicate(self)`` is truthy and return its value; else AssertionError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{message or 'condition not met'} within {timeout}s"
                                         f"\n{self.describe()}")
                self._cond.wait(min(remaining, 0.05))

    def describe(self) -> str:
        with self._cond:
            lines = [f"{r['to']} -> {r['status']} {r.get('error') or r.get('sid') or ''} "
                     f"{(r['body'] or r['content_sid'] or '')[:50]!r}"
                     for r in self._requests[-15:]]
        return "last requests:\n  " + ("\n  ".join(lines) or "none")

    def reset(self) -> None:
        """Forget requests, messages and injected errors."""
        self._clear()

    # -- request handling (server threads) --------------------------------------------------

    def handle_request(self, method: str, path: str, content_type: str, authorization: str,
                       body: bytes) -> tuple[int, JSON]:
        arrived = time.monotonic()
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        record: JSON = {
            "time": arrived, "method": method, "path": path, "status": None,
            "to": form.get("To"), "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body"), "content_sid": form.get("ContentSid"),
            "content_variables": form.get("ContentVariables"),
            "status_callback": form.get("StatusCallback"), "params": form,
            "content_type": content_type, "sid": None, "error": None}
        with self._cond:
            self._requests.append(record)
        try:
            status, payload = self._dispatch(method, path, content_type, authorization, form)
        except TwilioError as error:
            status, payload = error.status, error.payload()
            record["error"] = error.code
        except Exception as error:  # a bug in the fake: say so rather than drop the connection
            traceback.print_exc()
            status, payload = 500, error_body(500, 20500, f"fake crashed: {error!r}")
            record["error"] = 20500
        with self._cond:
            record["status"] = status
            if status == 201:
                record["sid"] = payload["sid"]
            self._cond.notify_all()
        hang = self._take_hang(record["to"]) if status == 201 else None
        if hang:
            self._released.wait(hang)
        return status, payload

    def _dispatch(self, method: str, path: str, content_type: str, authorization: str,
                  form: dict[str, str]) -> tuple[int, JSON]:
        parts = path.strip("/").split("/")
        if not self._authorised(authorization):
            raise TwilioError(401, 20003)
        if (len(parts) != 4 or parts[0] != API_VERSION or parts[1] != "Accounts"
                or parts[3] != "Messages.json"):
            raise TwilioError(404, 20404)
        if parts[2] != self.account_sid:
            raise TwilioError(401, 20003)  # another account's resources
        if method != "POST":
            raise TwilioError(405, 20004, "Method not allowed")
        if not content_type.lower().startswith("application/x-www-form-urlencoded"):
            raise TwilioError(400, 20001, "Expected a form-encoded request")
        return 201, self._create(form)

    def _authorised(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return (secrets.compare_digest(user, self.account_sid)
                and secrets.compare_digest(password, self.auth_token))

    def _create(self, form: dict[str, str]) -> JSON:
        to = form.get("To", "")
        sender = form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        text = form.get("Body", "")
        content_sid = form.get("ContentSid", "")
        if not to:
            raise TwilioError(400, 21604)
        if not sender and not service:
            raise TwilioError(400, 21603)
        if not text and not content_sid and not form.get("MediaUrl"):
            raise TwilioError(400, 21602)
        if len(text) > MAX_BODY:
            raise TwilioError(400, 21617)
        if sender and sender.startswith("whatsapp:") != to.startswith("whatsapp:"):
            raise TwilioError(400, 21910)
        if "ContentVariables" in form:
            try:
                if not isinstance(json.loads(form["ContentVariables"]), dict):
                    raise ValueError
            except ValueError:
                raise TwilioError(400, 21656) from None
        number = to.removeprefix("whatsapp:")
        if not (number.startswith("+") and number[1:].isdigit() and 8 <= len(number) <= 16):
            raise TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        self._injected_error(to, template=bool(content_sid))
        return self._message(form, to, sender, service, text, content_sid)

    def _injected_error(self, to: str, template: bool) -> None:
        with self._cond:
            queue = self._errors.get(to, [])
            for entry in queue:
                status, code, message, times = entry
                if code == 63016 and template:
                    continue  # a template may start a conversation outside the window
                entry[3] = times - 1
                if entry[3] <= 0:
                    queue.remove(entry)
                raise TwilioError(status, code, message)

    def _take_hang(self, to: str | None) -> float | None:
        with self._cond:
            hangs = self._hangs.get(to or "")
            return hangs.pop(0) if hangs else None

    def _message(self, form: dict[str, str], to: str, sender: str, service: str, text: str,
                 content_sid: str) -> JSON:
        sid = "SM" + secrets.token_hex(16)
        now = email.utils.format_datetime(dt.datetime.now(dt.UTC).replace(microsecond=0),
                                          usegmt=True).replace("GMT", "+0000")
        if content_sid and not text:
            variables = json.loads(form.get("ContentVariables") or "{}")
            text = f"[template {content_sid}] " + " ".join(str(v) for v in variables.values())
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        message: JSON = {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": text,
            "date_created": now, "date_sent": None, "date_updated": now,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": sender or None, "messaging_service_sid": service or None,
            "num_media": "1" if form.get("MediaUrl") else "0",
            "num_segments": str(num_segments(text)), "price": None, "price_unit": "USD",
            "sid": sid, "status": "accepted" if service else "queued",
            "subresource_uris": {"media": uri + "/Media.json", "feedback": uri + "/Feedback.json"},
            "to": to, "uri": uri + ".json"}
        with self._cond:
            self._messages[sid] = message
        return message


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A running FakeTwilio; import it into a conftest or test module to use it."""
    with FakeTwilio() as fake:
        yield fake


if __name__ == "__main__":  # python -m tests.fakes.twilio_api PORT (bench/broadcast.py)
    FakeTwilio(port=int(sys.argv[1])).serve_until_stopped()
