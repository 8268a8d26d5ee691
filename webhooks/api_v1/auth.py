"""Who is calling the staff API: a bearer token that acts as its staff member.

Every view is declared with `route(rule, role)`, which authenticates the token and checks
the role (admin ⊇ editor ⊇ viewer) before the view runs and records the role in ROLES, so
a test can prove that no API route goes unguarded ("public" is for what holds no data: the
API's own description). Refusals are JSON `{"error": ...}` (the `Error` schema): no, an
unknown or a revoked token 401; a role too low 403.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from flask import Blueprint, abort, g, jsonify, request

from bot.shell import api_tokens
from bot.shell import staff as accounts
from webhooks.runtime import runtime

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
View = TypeVar("View", bound=Callable[..., Any])
ROLES: dict[str, str] = {}  # endpoint -> the least role that may use it ("public": no token)
PUBLIC = "public"

# The shape of every refusal, named in each operation's documented error responses.
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Why the request was refused, in words.",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
        "additionalProperties": False,
    },
}


@dataclass(frozen=True)
class Caller:
    """The staff member a token belongs to (a plain value, not a database row)."""

    id: int
    email: str
    role: str


def refuse(code: int, message: str) -> NoReturn:
    """End the request with `{"error": message}` and `code`."""
    response = jsonify(error=message)
    response.status_code = code
    if code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="petitionbot"'
    abort(response)


def now() -> dt.datetime:
    return runtime().service.clock()


def _authenticate() -> Caller:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        refuse(401, "send a staff API token: Authorization: Bearer <token>")
    with runtime().sessions.begin() as session:  # records when the token was last used
        user = api_tokens.holder(session, token.strip(), now())
        caller = None if user is None else Caller(user.id, user.email, user.role)
    if caller is None:
        refuse(401, "this token is unknown or revoked")
    return caller


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


def caller() -> Caller:
    who: Caller = g.api_caller
    return who


def json_body() -> dict[str, Any]:
    """The request's JSON object; 400 for anything else."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        refuse(400, "send a JSON object (Content-Type: application/json)")
    return body
