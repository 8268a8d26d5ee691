"""Telegram webhook: secret check -> Update -> the shared update processing.

Works under gunicorn's sync and threaded workers: each process owns one event loop (the
TelegramGateway), and the view waits for the update to be handled, so an unavailable
database becomes a 503 that Telegram retries, and a retried update is a no-op.

Anything else is answered 200 (DESIGN §8): a body that is not a usable Update is logged
once and ignored (Telegram re-sends on any non-2xx, so refusing it would only bring it
back), and when Telegram itself cannot be reached the update's effect is still recorded;
only its replies are lost.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, Response, abort, request
from telegram import Bot, Update

from bot.channels.telegram import MAX_ID, parse, process_update, raised_at
from bot.infra.db_errors import database_unavailable
from webhooks.runtime import runtime

bp = Blueprint("telegram", __name__, url_prefix="/telegram")
log = logging.getLogger("petitionbot.telegram")

WEBHOOK_PATIENCE = 15.0


@bp.post("/webhook")
def webhook() -> Response:
    rt = runtime()
    secret = rt.settings.telegram_webhook_secret
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if rt.telegram is None or not secret or not hmac.compare_digest(
            given.encode(), secret.encode()):
        abort(403, "invalid secret token")
    gateway = rt.telegram
    body = request.get_data(cache=False)  # 413 beyond MAX_CONTENT_LENGTH
    update, problem = read_update(body, gateway.unchecked_bot)
    if update is None:
        log.warning("telegram update ignored: %s", problem)
        return Response(status=200)
    send = gateway.initialised()  # getMe; asked again on a later request if it failed
    if send and gateway.bot.username:
        rt.service.telegram_username = gateway.bot.username
    # Well inside gunicorn's worker timeout: a long flood wait drops the reply, never the
    # worker (the message's effect is committed before any reply is sent).
    try:
        gateway.run(process_update(update, gateway.unchecked_bot, rt.service,
                                   patience=WEBHOOK_PATIENCE, send=send),
                    timeout=WEBHOOK_PATIENCE + 5)
    except TimeoutError:
        # Stuck, most likely waiting for the database: Telegram's retry is a no-op if the
        # effect was committed after all, and handles the update if it was not.
        log.warning("telegram update not handled in %.0fs; Telegram will retry",
                    WEBHOOK_PATIENCE + 5)
        return Response(status=503, headers={"Retry-After": "5"})
    except Exception as error:
        if database_unavailable(error):
            raise  # a 503: Telegram retries it once the database is back
        # Anything else would fail again on every retry, and Telegram holds back this
        # chat's later updates while it retries: drop this one (as the poller does), with
        # where it failed and never what it said.
        log.error("telegram update %s dropped: %s at %s", update.update_id,
                  type(error).__name__, raised_at(error))
    return Response(status=200)


def read_update(body: bytes, bot: Bot) -> tuple[Update | None, str]:
    """The Update a request body holds, or None and why not, in words that quote nothing
    of the body (it may be a supporter's message)."""
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, "not JSON"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    update_id = data.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int) or not (
            0 <= update_id <= MAX_ID):
        return None, "no usable update_id"
    try:
        update = Update.de_json(data, bot)
        parse(update)  # what the handling will read of it must be readable
    except Exception as error:  # de_json raises whatever a field of the wrong type causes
        return None, f"malformed ({type(error).__name__})"
    return update, ""
