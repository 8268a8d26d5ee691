"""Twilio SMS and WhatsApp in: the webhook's form read and proved to come from Twilio, the
Received message built from it, the TwiML answer, and delivery reports.

One handler serves both channels and branches only on the `whatsapp:` prefix of `From`.
werkzeug parses the form (`request.form`) and twilio's MessagingResponse writes the TwiML.
X-Twilio-Signature is checked first by `twilio_signature`, a direct HMAC (bench/inbound.py
run with and without it: twilio's RequestValidator.validate on every message cost SQLite
about a tenth of its throughput; a property test holds the two equal), then by the
validator itself, which also knows the other URL forms Twilio may sign. A request that is
not Twilio's changes nothing: 400 if it is not a form (or not the form Twilio sends), 403
if its signature does not match.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, Forbidden
from werkzeug.wrappers import Request

from bot.core.conversation import Channel
from bot.core.inputs import storable
from bot.core.phones import normalise_phone
from bot.core.render import Message, render
from bot.infra import metrics
from bot.infra.settings import Settings
from bot.shell.broadcast import STATUS_TARGET, record_status
from bot.shell.service import Received

FORM = "application/x-www-form-urlencoded"
TWIML = "text/xml"
MESSAGE_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
MAX_FIELDS = 200  # Twilio sends a few dozen


def authenticated_form(request: Request, settings: Settings) -> MultiDict[str, str]:
    """The request's form, once X-Twilio-Signature proves Twilio sent it to our public URL
    (PUBLIC_BASE_URL + path, and the query string, as Twilio signs it)."""
    if request.mimetype != FORM:
        raise BadRequest("expected a form-encoded Twilio request")
    if not settings.twilio_enabled:
        raise Forbidden("Twilio is not configured")
    form = request.form  # a body that is not UTF-8 reads as no fields (and fails below)
    if sum(len(values) for values in form.listvalues()) > MAX_FIELDS:
        raise BadRequest("too many form fields")
    url = settings.public_base_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    signature = request.headers.get("X-Twilio-Signature", "")
    token = settings.twilio_auth_token
    if signature.isascii() and hmac.compare_digest(  # base64 is ASCII (compare_digest insists)
            twilio_signature(token, url, form.items(multi=True)), signature):
        return form
    # The URL as configured in Twilio may carry an explicit :443 or :80; the validator
    # tries those forms too.
    if not RequestValidator(token).validate(url, form, signature):
        raise Forbidden("invalid Twilio signature")
    return form


def twilio_signature(auth_token: str, url: str, pairs: Iterable[tuple[str, str]]) -> str:
    """What Twilio puts in X-Twilio-Signature for a form posted to `url`: base64 of the
    HMAC-SHA1, keyed by the auth token, of the URL followed by every field's name and
    value, sorted by name then value, each pair once (RequestValidator.compute_signature,
    without its per-field lookups)."""
    signed = url + "".join([name + value for name, value in sorted(set(pairs))])
    return base64.b64encode(hmac.digest(auth_token.encode(), signed.encode(), "sha1")).decode()


def received(form: MultiDict[str, str]) -> Received:
    """The inbound SMS or WhatsApp message a webhook's form carries (400 if it lacks what
    Twilio always sends)."""
    sid = form.get("MessageSid", "")
    sender = form.get("From", "")
    if not MESSAGE_SID.match(sid) or not sender or "Body" not in form:
        raise BadRequest("MessageSid, From and Body are required")
    channel = Channel.WHATSAPP if sender.startswith("whatsapp:") else Channel.SMS
    phone = normalise_phone(sender.removeprefix("whatsapp:"))
    if phone is None:
        raise BadRequest("From is not a phone number")
    return Received(channel, phone, form.get("Body", ""), sid, phone=phone,
                    opt_out=form.get("OptOutType", "").upper())


def answer(replies: Sequence[Message], channel: Channel) -> str:
    """The TwiML that sends the replies back, as `channel` shows them."""
    return twiml(render(message, channel).text for message in replies)


def twiml(texts: Iterable[str]) -> str:
    """`<Response><Message>..</Message></Response>`, valid XML whatever the text: what no
    XML document can hold (controls, U+FFFE, U+FFFF...) is dropped, as everywhere."""
    response = MessagingResponse()
    for text in texts:
        response.message(storable(text))
    return str(response)


@dataclass(frozen=True)
class StatusReport:
    """A delivery report for a message we sent."""

    sid: str
    status: str                # lowercase, as bot.shell.broadcast records it
    error_code: str | None
    delivery_id: int | None    # our delivery, named in the callback URL (?d=ID)
    channel: str               # "sms" or "whatsapp", for metrics


def status_report(form: MultiDict[str, str], delivery: str) -> StatusReport:
    """The report a status callback's form carries; `delivery` is its ?d= (400 if it lacks
    what Twilio always sends)."""
    sid = form.get("MessageSid", "")
    reported = form.get("MessageStatus", "")
    if not MESSAGE_SID.match(sid) or not reported:
        raise BadRequest("MessageSid and MessageStatus are required")
    # Our sends name their delivery in the callback URL (?d=ID, signed with the rest), so
    # a report that arrives before the worker has recorded the send still finds its row.
    # An id no row can have (not 1..2**63-1 in ASCII digits) is as good as none.
    delivery_id = int(delivery) if (delivery.isascii() and delivery.isdigit()
                                    and len(delivery) <= 19) else 0
    # Twilio's error codes are numbers; keep what a database can hold of anything else.
    error_code = "".join(c for c in form.get("ErrorCode", "")[:40]
                         if c.isascii() and c.isprintable())
    channel = "whatsapp" if form.get("To", "").startswith("whatsapp:") else "sms"
    return StatusReport(sid, reported.lower(), error_code or None,
                        delivery_id if 1 <= delivery_id < 2**63 else None, channel)


def record(report: StatusReport, sessions: sessionmaker[Session], now: datetime) -> None:
    """Record the report in its own transaction; a status never moves backwards."""
    with sessions.begin() as session:
        moved = record_status(session, report.sid, report.status, report.error_code, now,
                              delivery_id=report.delivery_id)
    if moved:
        metrics.observe_delivery(report.channel, STATUS_TARGET[report.status])
