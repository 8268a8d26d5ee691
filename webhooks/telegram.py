"""Telegram webhook: secret check -> Update -> the shared update processing.

Works under gunicorn's sync and threaded workers: each process owns one event loop (the
TelegramGateway), and the view waits for the update to be handled, so a database error
becomes a 5xx that Telegram retries, and a retried update is a no-op.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, abort, request

from bot.channels.telegram import process_update
from webhooks import runtime

bp = Blueprint("telegram", __name__, url_prefix="/telegram")

WEBHOOK_PATIENCE = 15.0


@bp.post("/webhook")
def webhook() -> Response:
    rt = runtime()
    secret = rt.settings.telegram_webhook_secret
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if rt.telegram is None or not secret or not hmac.compare_digest(
            given.encode(), secret.encode()):
        abort(403, "invalid secret token")
    data: Any = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        abort(400, "expected a Telegram Update")
    from telegram import Update

    gateway = rt.telegram
    try:
        update = Update.de_json(data, gateway.bot)
    except (AttributeError, KeyError, TypeError, ValueError):  # a field of the wrong type
        abort(400, "malformed Telegram Update")
    if rt.telegram.bot.username:
        rt.service.telegram_username = rt.telegram.bot.username
    # Well inside gunicorn's worker timeout: a long flood wait drops the reply, never the
    # worker (the message's effect is committed before any reply is sent).
    gateway.run(process_update(update, gateway.bot, rt.service, patience=WEBHOOK_PATIENCE),
                timeout=WEBHOOK_PATIENCE + 5)
    return Response(status=200)
