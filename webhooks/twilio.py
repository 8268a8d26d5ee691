"""Twilio SMS and WhatsApp: authenticate -> parse -> service -> TwiML.

One handler serves both channels and branches only on the `whatsapp:` prefix of `From`.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Iterable
from urllib.parse import unquote
from xml.sax.saxutils import escape

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.datastructures import MultiDict

from bot.core.conversation import Channel
from bot.core.phones import normalise_phone
from bot.core.render import render
from bot.infra import metrics
from bot.shell.broadcast import STATUS_TARGET, record_status
from bot.shell.service import Received
from webhooks.runtime import runtime

bp = Blueprint("twilio", __name__, url_prefix="/twilio")

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
EMPTY = str(MessagingResponse())

MESSAGE_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 200  # Twilio sends a few dozen


@bp.post("/messages")
def messages() -> Response:
    """An inbound SMS or WhatsApp message; the reply goes back in the TwiML body."""
    form = authenticated_form()
    sid = form.get("MessageSid", "")
    sender = form.get("From", "")
    if not MESSAGE_SID.match(sid) or not sender or "Body" not in form:
        abort(400, "MessageSid, From and Body are required")
    channel = Channel.WHATSAPP if sender.startswith("whatsapp:") else Channel.SMS
    phone = normalise_phone(sender.removeprefix("whatsapp:"))
    if phone is None:
        abort(400, "From is not a phone number")
    opt_out = form.get("OptOutType", "").upper()
    handled = runtime().service.receive(
        Received(channel, phone, form.get("Body", ""), sid, phone=phone, opt_out=opt_out))
    return twiml(render(message, channel).text for message in handled.replies)


@bp.post("/status")
def status() -> Response:
    """A delivery report for a message we sent; a status never moves backwards."""
    form = authenticated_form()
    sid = form.get("MessageSid", "")
    reported = form.get("MessageStatus", "")
    if not MESSAGE_SID.match(sid) or not reported:
        abort(400, "MessageSid and MessageStatus are required")
    # Our sends name their delivery in the callback URL (?d=ID, signed with the rest), so
    # a report that arrives before the worker has recorded the send still finds its row.
    # An id no row can have (not 1..2**63-1 in ASCII digits) is as good as none.
    delivery = request.args.get("d", "")
    delivery_id = int(delivery) if (delivery.isascii() and delivery.isdigit()
                                    and len(delivery) <= 19) else 0
    # Twilio's error codes are numbers; keep what a database can hold of anything else.
    error_code = "".join(c for c in form.get("ErrorCode", "")[:40]
                         if c.isascii() and c.isprintable())
    rt = runtime()
    with rt.sessions.begin() as session:
        moved = record_status(session, sid, reported.lower(), error_code or None,
                              rt.service.clock(),
                              delivery_id=delivery_id if 1 <= delivery_id < 2**63 else None)
    if moved:
        channel = "whatsapp" if form.get("To", "").startswith("whatsapp:") else "sms"
        metrics.observe_delivery(channel, STATUS_TARGET[reported.lower()])
    return Response(status=204)


def authenticated_form() -> MultiDict[str, str]:
    """The request's form, once X-Twilio-Signature proves Twilio sent it to our public URL
    (400 if it is not a form, 403 if the signature does not match)."""
    environ = request.environ
    if environ.get("CONTENT_TYPE", "").partition(";")[0].strip(" \t").lower() != FORM:
        abort(400, "expected a form-encoded Twilio request")
    settings = runtime().settings
    if not settings.twilio_enabled:
        abort(403, "Twilio is not configured")
    length = request.content_length
    if length is not None and length <= (current_app.config["MAX_CONTENT_LENGTH"] or 0):
        body = environ["wsgi.input"].read(length)  # what werkzeug would, directly
    else:
        body = request.get_data(cache=False)  # 413 beyond MAX_CONTENT_LENGTH
    try:
        pairs = parse_form(body)
    except ValueError:
        abort(400, "too many form fields")
    url = settings.public_base_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    signature = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
    if not signature.isascii():  # base64 never is anything else (and compare_digest raises)
        abort(403, "invalid Twilio signature")
    form = MultiDict(pairs)
    if signature and hmac.compare_digest(twilio_signature(settings.twilio_auth_token, url,
                                                          pairs), signature):
        return form
    # The URL as configured in Twilio may carry an explicit :443 or :80; the library's
    # validator tries those forms too.
    if not RequestValidator(settings.twilio_auth_token).validate(url, form, signature):
        abort(403, "invalid Twilio signature")
    return form


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """`parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
    max_num_fields=MAX_FIELDS)`, field for field (a property test checks it), without its
    per-field overhead: Twilio escapes only a few of a form's twenty-odd fields."""
    text = body.decode("utf-8", "replace")
    if text.count("&") >= MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in name or "%" in name:
            name = unquote(name.replace("+", " "))
        if "+" in value or "%" in value:
            value = unquote(value.replace("+", " "))
        pairs.append((name, value))
    return pairs


def twilio_signature(auth_token: str, url: str, pairs: Iterable[tuple[str, str]]) -> str:
    """What Twilio puts in X-Twilio-Signature for a form posted to `url`: base64 of the
    HMAC-SHA1, keyed by the auth token, of the URL followed by every parameter's name and
    value, sorted by name then value, each pair once (twilio's
    RequestValidator.compute_signature, which tests check this against, without its
    per-request overhead)."""
    signed = url + "".join([name + value for name, value in sorted(set(pairs))])
    return base64.b64encode(hmac.digest(auth_token.encode(), signed.encode(), "sha1")).decode()


def twiml(texts: Iterable[str]) -> Response:
    """`<Response><Message>..</Message></Response>`: what twilio's MessagingResponse writes
    for plain messages, built directly (its ElementTree round trip cost a third of a
    message's time)."""
    body = "".join(f"<Message>{escape(text)}</Message>" if text else "<Message />"
                   for text in texts)
    xml = f'{XML_DECLARATION}<Response>{body}</Response>' if body else EMPTY
    return Response(xml, mimetype="text/xml")
