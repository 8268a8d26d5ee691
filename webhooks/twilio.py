"""Twilio SMS and WhatsApp webhooks: authenticate -> parse -> service -> TwiML.

The routes only; what they do is in bot/channels/twilio/inbound.py.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from bot.channels.twilio import inbound
from webhooks.runtime import runtime

bp = Blueprint("twilio", __name__, url_prefix="/twilio")


@bp.post("/messages")
def messages() -> Response:
    """An inbound SMS or WhatsApp message; the reply goes back in the TwiML body."""
    rt = runtime()
    message = inbound.received(inbound.authenticated_form(request, rt.settings))
    handled = rt.service.receive(message)
    return Response(inbound.answer(handled.replies, message.channel), mimetype=inbound.TWIML)


@bp.post("/status")
def status() -> Response:
    """A delivery report for a message we sent; a status never moves backwards."""
    rt = runtime()
    form = inbound.authenticated_form(request, rt.settings)
    report = inbound.status_report(form, request.args.get("d", ""))
    inbound.record(report, rt.sessions, rt.service.clock())
    return Response(status=204)
