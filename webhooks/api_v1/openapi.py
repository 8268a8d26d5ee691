"""The staff API's OpenAPI 3.0 document, generated from the code: GET /api/v1/openapi.json.

Each API view documents itself: its docstring is one sentence, a line `---`, then its
operations in YAML keyed by lower-case method; a module that defines views names its
schemas in a module-level SCHEMAS. What the code already knows is added here, not written
twice: every rule of the blueprint, its path parameters from the URL converters, the least
role each operation needs (`route`'s ROLES, as `x-role` and in words), the bearer scheme,
the 401, 403 and 429 that `route` answers, and the 400 naming a query parameter that
holds text no database can hold, which webhooks/guards.py answers before any view. The
document is built once per process.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import Any

from apispec import APISpec, BasePlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import current_app, jsonify
from werkzeug.routing import BaseConverter, IntegerConverter, Rule, parse_converter_args
from werkzeug.routing.converters import NumberConverter, UUIDConverter

from bot.shell.staff import ROLES as ROLE_ORDER
from webhooks.api_v1 import auth
from webhooks.api_v1.auth import PUBLIC, ROLES, bp, route
from webhooks.runtime import runtime

OPENAPI_VERSION = "3.0.3"
FIELD_ERROR = {"$ref": "#/components/schemas/FieldError"}
KEY = "petitionbot.openapi"  # where the built document is kept, in app.extensions
SECURITY = "bearerAuth"
# A variable part of a URL rule, as werkzeug writes it: <converter(arguments):name>
VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<arguments>.*?)\))?:)?(?P<name>\w+)>")

DESCRIPTION = """\
What staff do in the console, an integration (a CRM, a helpdesk, a script) can do here.
JSON in and out.

**Tokens.** Send `Authorization: Bearer <token>` with every request. A token belongs to one
staff member and acts with their role and name: the audit log names them, and an
announcement's second approval must come from someone else. Staff make and revoke their
own tokens in the console (API tokens); an operator runs
`petitionbot token create EMAIL [--name NAME]`, `petitionbot token list [EMAIL]` and
`petitionbot token revoke ID`. A token is shown once, when it is made; only a hash of it is
kept, so a lost token is revoked and replaced, never recovered.

**Roles** nest: an admin may do all an editor may, and an editor all a viewer may. Each
operation names the least role it needs (`x-role`).

**Errors** are JSON `{"error": "..."}`: no token, or an unknown or revoked one, 401; a role
too low, 403; a bad request, 400 naming the field, with nothing changed. Token requests
need no CSRF token and set no cookie.

This document itself needs no token: it describes the API and holds no data.
"""
BUDGET = """
**Budget.** Each token may make {requests} requests in any {window}; every request counts,
refused ones included. Past that the answer is 429 with a `Retry-After` header: the seconds
until the next request fits. Each token has its own budget, so a script that runs away
slows only itself.
"""

WHO = {
    "viewer": "Needs a staff API token (any role: viewer, editor or admin).",
    "editor": "Needs the token of an editor or an admin.",
    "admin": "Needs an admin's token.",
    PUBLIC: "Needs no token: it describes the API and holds no data.",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


RESPONSES: dict[str, dict[str, Any]] = {
    "Unauthorized": _error("No token, or an unknown or revoked one."),
    "Forbidden": _error("The token's staff member may not do this: their role is too low."),
    "TooManyRequests": {
        **_error("The token has used its request budget for now; nothing was done."),
        "headers": {"Retry-After": {
            "description": "Seconds until the token's next request fits its budget.",
            "schema": {"type": "integer", "minimum": 1}}}},
}


def _path_parameter(rule: Rule, variable: re.Match[str]) -> dict[str, Any]:
    """A path parameter as the rule's converter parses it (an id's bounds included)."""
    arguments = variable["arguments"]
    args, kwargs = parse_converter_args(arguments) if arguments else ((), {})
    assert rule.map is not None  # the rule is bound to the app's url_map
    converter = rule.map.converters[variable["converter"] or "default"](
        rule.map, *args, **kwargs)
    return {"in": "path", "name": variable["name"], "required": True,
            "schema": _schema_of(converter)}


def _schema_of(converter: BaseConverter) -> dict[str, Any]:
    if isinstance(converter, NumberConverter):
        schema: dict[str, Any] = {
            "type": "integer" if isinstance(converter, IntegerConverter) else "number"}
        lowest = converter.min if converter.min is not None or converter.signed else 0
        if lowest is not None:
            schema["minimum"] = lowest
        if converter.max is not None:
            schema["maximum"] = converter.max
        return schema
    if isinstance(converter, UUIDConverter):
        return {"type": "string", "format": "uuid"}
    return {"type": "string"}


def _sentence(view: Callable[..., Any]) -> str:
    """The plain sentence before the docstring's `---`."""
    return " ".join((view.__doc__ or "").split("---")[0].split())


class RoutePlugin(BasePlugin):
    """Adds to each operation what `route` enforces, read off the rule being documented."""

    def path_helper(self, path: str | None = None, operations: dict[Any, Any] | None = None,
                    parameters: list[dict[str, Any]] | None = None,
                    **kwargs: Any) -> str | None:
        rule: Rule = kwargs["rule"]
        assert parameters is not None
        parameters.extend(_path_parameter(rule, v) for v in VARIABLE.finditer(rule.rule))
        return None  # the path itself is FlaskPlugin's

    def operation_helper(self, path: str | None = None,
                         operations: dict[Any, Any] | None = None, **kwargs: Any) -> None:
        rule: Rule = kwargs["rule"]
        role = ROLES[rule.endpoint]
        sentence = _sentence(kwargs["view"])
        for method, operation in (operations or {}).items():
            if method.startswith("x-") or not isinstance(operation, dict):
                continue
            described = operation.get("description") or sentence
            operation["description"] = f"{described}\n\n{WHO[role]}".strip()
            operation["x-role"] = role
            responses = {str(code): answer
                         for code, answer in (operation.get("responses") or {}).items()}
            if role == PUBLIC:
                operation["security"] = []
            else:
                responses.setdefault("401", {"$ref": "#/components/responses/Unauthorized"})
                if ROLE_ORDER.index(role) > 0:  # above viewer: some tokens are refused
                    responses.setdefault("403", {"$ref": "#/components/responses/Forbidden"})
                responses.setdefault("429", {"$ref": "#/components/responses/TooManyRequests"})
            if any(p.get("in") == "query" for p in operation.get("parameters") or ()):
                responses["400"] = _naming_a_field(responses.get("400"))
            operation["responses"] = responses


def _naming_a_field(response: dict[str, Any] | None) -> dict[str, Any]:
    """An operation's 400, which may also be a FieldError (webhooks/guards.py refuses a
    query parameter holding a NUL before the view runs)."""
    if response is None:
        return {"description": "A query parameter that cannot be used (`field` names it); "
                               "nothing was changed.",
                "content": {"application/json": {"schema": FIELD_ERROR}}}
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    schemas = schema.get("oneOf", [schema])
    if FIELD_ERROR in schemas:
        return response
    return {**response, "content": {"application/json": {
        "schema": {"oneOf": [FIELD_ERROR, *schemas]}}}}


def _description() -> str:
    """DESCRIPTION and this deployment's request budget, in words."""
    budget = runtime().config.api
    minutes, seconds = divmod(budget.window_seconds, 60)
    window = (f"{minutes} minute{'s' * (minutes != 1)}" if minutes and not seconds
              else f"{budget.window_seconds} seconds")
    return DESCRIPTION + BUDGET.format(requests=budget.requests_per_window, window=window)


def _schemas(views: Iterable[Callable[..., Any]]) -> dict[str, dict[str, Any]]:
    """Every schema the API's modules name (auth's Error included); one name, one schema."""
    found = dict(auth.SCHEMAS)
    for module in sorted({view.__module__ for view in views}):
        for name, schema in getattr(sys.modules[module], "SCHEMAS", {}).items():
            if found.setdefault(name, schema) != schema:
                raise ValueError(f"two different schemas are named {name} ({module})")
    return found


def build() -> dict[str, Any]:
    """The OpenAPI document of this app's /api/v1, from its url_map and views."""
    app = current_app
    rules = sorted((r for r in app.url_map.iter_rules() if r.endpoint.startswith(f"{bp.name}.")),
                   key=lambda r: (r.rule, r.endpoint))
    views = [app.view_functions[r.endpoint] for r in rules]
    spec = APISpec(
        title="petitionbot staff API", version=version("petitionbot"),
        openapi_version=OPENAPI_VERSION, plugins=[FlaskPlugin(), RoutePlugin()],
        info={"description": _description()},
        servers=[{"url": runtime().settings.public_base_url}],
        security=[{SECURITY: []}])
    spec.components.security_scheme(SECURITY, {
        "type": "http", "scheme": "bearer",
        "description": "A staff API token (it starts pbt_), made in the console or with "
                       "`petitionbot token create`."})
    for name, schema in _schemas(views).items():
        spec.components.schema(name, schema)
    for name, response in RESPONSES.items():
        spec.components.response(name, response)
    for rule, view in zip(rules, views, strict=True):
        spec.path(view=view, app=app, rule=rule)
    return spec.to_dict()


def document() -> dict[str, Any]:
    """The document, built on first use and kept for the life of the process."""
    built: dict[str, Any] | None = current_app.extensions.get(KEY)
    if built is None:
        built = current_app.extensions[KEY] = build()
    return built


@route("/openapi.json", PUBLIC, methods=["GET"])
def openapi() -> Any:
    """This description of the staff API, in OpenAPI 3.0.
    ---
    get:
      summary: The staff API's OpenAPI document
      responses:
        200:
          description: This document.
          content:
            application/json:
              schema: {type: object}
    """
    return jsonify(document())
