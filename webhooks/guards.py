"""What every request is held to before its view runs, in one place for every route
(DESIGN §8: whatever a stranger sends, a reply or a 4xx, never a 5xx and never a stall).

- Text no database can hold (NUL, lone surrogates, non-characters:
  bot.core.inputs.storable) is refused before any view looks it up or stores it: in the
  URL's path, and so in any view argument, a 404 (no row can be named so); in the query or
  a form field, a 400. The providers' forms are the exception: what a stranger texts is
  cleaned and answered, never refused (bot.shell.service.Received). A password is only
  hashed, never stored or searched, so it may hold anything.
- A provider's webhook waits for SQLite's write lock no longer than INBOUND_PATIENCE from
  the request's start, whatever it reads or writes (a message, a delivery report, a staff
  command): then 503, which the provider retries while it still listens (Twilio gives up
  after 15 s). The deadline is a context variable (models.db.set_lock_deadline), so it
  follows the Telegram webhook's work onto the gateway's loop and its threads (asyncio
  hands a coroutine and to_thread the caller's context); bot/shell/unit_of_work.py holds
  each message to the same deadline.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from flask import Flask, abort, g, request
from werkzeug.exceptions import BadRequest

from bot.core.inputs import storable
from bot.shell import unit_of_work
from models.db import reset_lock_deadline, set_lock_deadline

UNSTORABLE = ("{}: holds characters that cannot be stored (a NUL, a lone surrogate...); "
              "remove them and try again")
HASHED_ONLY = frozenset({"password"})  # form fields only ever hashed, never stored


class Unstorable(BadRequest):
    """400: a query parameter or a form field holds text no database can hold. JSON
    answers name the field (`{"error", "field"}`, the staff API's FieldError)."""

    def __init__(self, field: str) -> None:
        super().__init__(UNSTORABLE.format(field))
        self.field = field


def install(app: Flask, providers: Collection[str]) -> None:
    """Both rules on the app being built; `providers` names the blueprints of the
    providers' webhooks."""
    names = frozenset(providers)

    def before() -> None:
        if request.blueprint in names:
            g.lock_deadline = set_lock_deadline(
                time.monotonic() + unit_of_work.INBOUND_PATIENCE)
        refuse_unstorable(form=request.blueprint not in names)

    def after(_error: BaseException | None) -> None:
        token = g.pop("lock_deadline", None)
        if token is not None:
            reset_lock_deadline(token)

    app.before_request(before)
    app.teardown_request(after)


def refuse_unstorable(form: bool) -> None:
    """404 for a path, 400 naming the field for a query parameter (or, with `form`, a form
    field) holding text no database can hold."""
    if storable(request.path) != request.path:
        abort(404, "No such page.")
    fields = [*request.args.items(multi=True), *(
        (k, v) for k, v in (request.form.items(multi=True) if form else ())
        if k not in HASHED_ONLY)]
    for name, value in fields:
        if storable(name) != name or storable(value) != value:
            raise Unstorable(storable(name))
