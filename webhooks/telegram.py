"""Telegram webhook: secret check, then bot.channels.telegram.inbound handles the update.

Anything but a wrong secret is answered 200, or 503 while the database is unavailable
(DESIGN §8; the rules are in bot/channels/telegram/inbound.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from bot.channels.telegram import inbound
from webhooks.runtime import runtime

bp = Blueprint("telegram", __name__, url_prefix="/telegram")


@bp.post("/webhook")
def webhook() -> Response:
    rt = runtime()
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if rt.telegram is None or not inbound.secret_matches(
            given, rt.settings.telegram_webhook_secret):
        abort(403, "invalid secret token")
    body = request.get_data(cache=False)  # 413 beyond MAX_CONTENT_LENGTH
    answer = inbound.handle_webhook(rt.telegram, rt.service, body)
    return Response(status=answer.status, headers=answer.headers)
