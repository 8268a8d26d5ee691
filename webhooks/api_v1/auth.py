"""Who is calling the staff API: a bearer token that acts as its staff member.

Every view is declared with `route(rule, role)`, which authenticates the token and checks
the role (admin ⊇ editor ⊇ viewer) before the view runs and records the role in ROLES, so
a test can prove that no API route goes unguarded ("public" is for what holds no data: the
API's own description). Refusals are JSON `{"error": ...}` (the `Error` schema): no, an
unknown or a revoked token 401; a role too low 403; a token over its request budget 429.

The budget (config.toml `[api] requests_per_window` per `window_seconds`) is per token, not
per staff member, so one runaway script cannot starve its owner's other integrations. It is
counted by the login throttle's code (bot/shell/throttle.py): one `rate_windows` row per
token, keyed by a keyed hash of the token's stored hash, locked while it is read and
written in the transaction that looks the token up. So the count is exact across threads
and processes without Redis, and costs one row write per request. Every request of a known
token counts, a refused one (403, 429) included: the budget bounds load, not success.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from flask import Blueprint, abort, current_app, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import MethodNotAllowed, NotFound

from bot.shell import api_tokens, throttle
from bot.shell import staff as accounts
from models import RateWindow
from webhooks.runtime import runtime

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
View = TypeVar("View", bound=Callable[..., Any])
ROLES: dict[str, str] = {}  # endpoint -> the least role that may use it ("public": no token)
PUBLIC = "public"
BUDGET = "api-token"  # the name of each token's request budget in rate_windows

# The shape of every refusal, named in each operation's documented error responses.
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Why the request was refused, in words.",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
        "additionalProperties": False,
    },
    "FieldError": {
        "type": "object",
        "description": "Why the request was refused, and the field it concerns; nothing "
                       "was changed.",
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
        "required": ["error", "field"],
        "additionalProperties": False,
    },
}


@dataclass(frozen=True)
class Caller:
    """The staff member a token belongs to (a plain value, not a database row)."""

    id: int
    email: str
    role: str


def refuse(code: int, message: str, headers: dict[str, str] | None = None) -> NoReturn:
    """End the request with `{"error": message}` and `code`."""
    response = jsonify(error=message)
    response.status_code = code
    if code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="petitionbot"'
    response.headers.update(headers or {})
    abort(response)


def refuse_field(field: str, message: str) -> NoReturn:
    """400 `{"error": message, "field": field}` (the FieldError schema): the request
    changed nothing, and the client learns which field to fix."""
    response = jsonify(error=message, field=field)
    response.status_code = 400
    abort(response)


def now() -> dt.datetime:
    return runtime().service.clock()


def _authenticate() -> Caller:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        refuse(401, "send a staff API token: Authorization: Bearer <token>")
    at = now()
    with runtime().sessions.begin() as session:  # records when the token was last used
        user = api_tokens.holder(session, token.strip(), at)
        caller = None if user is None else Caller(user.id, user.email, user.role)
        wait = 0 if caller is None else _spend(session, token.strip(), at)
    if caller is None:
        refuse(401, "this token is unknown or revoked")
    if wait:
        refuse(429, f"this token has made its {runtime().config.api.requests_per_window} "
                    f"requests for now; try again in {wait} seconds",
               {"Retry-After": str(wait)})
    return caller


def _spend(session: Session, token: str, at: dt.datetime) -> int:
    """Count this request against the token's budget: 0 if it fits, else the seconds until
    one will (nothing is counted then)."""
    budget = runtime().config.api
    limit = throttle.Limit(BUDGET, budget.requests_per_window, budget.window_seconds)
    key = throttle.key(BUDGET, str(current_app.config["SECRET_KEY"]),
                       api_tokens.token_hash(token))
    if throttle.attempt(session, [(key, limit)], at):
        return 0
    # Still locked by attempt: the oldest hit kept is the next to leave the window.
    hits = session.scalar(select(RateWindow.hits).where(RateWindow.key == key)) or []
    oldest = min(hits, default=at.timestamp())
    return max(1, math.ceil(oldest + limit.window - at.timestamp()))


def route(rule: str, role: str, **options: Any) -> Callable[[View], View]:
    """Declare an API view and the least role its token's staff member needs ("public":
    no token, for what holds no data)."""

    def decorator(view: View) -> View:
        endpoint = options.pop("endpoint", view.__name__)

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if role == PUBLIC:
                return view(*args, **kwargs)
            caller = _authenticate()
            if not accounts.may(caller.role, role):
                refuse(403, f"this needs the {role} role; the token's staff member is a "
                            f"{caller.role}")
            g.api_caller = caller
            return view(*args, **kwargs)

        ROLES[f"api_v1.{endpoint}"] = role
        bp.add_url_rule(rule, endpoint, guarded, **options)
        return guarded  # type: ignore[return-value]

    return decorator


@bp.before_app_request
def _not_found_rather_than_not_allowed() -> None:
    """A path no rule takes is a 404, even when another method's rule has its shape.

    Werkzeug compares methods before it converts values, so PATCH /announcements/0 (an id
    below the rule's minimum) is answered 405 "GET allowed", though GET there is a 404 too.
    The path names nothing, so say so: 404, as every operation documents. (This runs
    before the routing error is raised, which is why it is a before-request function.)"""
    error = request.routing_exception
    if not isinstance(error, MethodNotAllowed) or not request.path.startswith(
            f"{bp.url_prefix}/"):
        return
    adapter = current_app.create_url_adapter(request)
    for method in error.valid_methods or ():
        try:
            if adapter is not None:
                adapter.match(method=method)
        except (NotFound, MethodNotAllowed):
            continue
        return  # another method does take this path: a true 405
    request.routing_exception = NotFound()


def caller() -> Caller:
    who: Caller = g.api_caller
    return who


def json_body() -> dict[str, Any]:
    """The request's JSON object; 400 for anything else."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        refuse(400, "send a JSON object (Content-Type: application/json)")
    return body
