"""The staff API's OpenAPI document (GET /api/v1/openapi.json), generated from the code: it
is valid, it is complete (every /api/v1 rule and method, the role each needs, the refusals
each gives), and it is true (what the API answers has a documented status and shape).

The API-wide checks run over the app's url_map, so an endpoint is covered the moment it
is registered; an endpoint this issue adds is skipped, by name, only while its module does
not exist yet."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.shell import api_tokens
from models.staff import ApiToken
from tests.integration.api_helpers import API, call, conforms, issue_tokens, template
from tests.integration.console_helpers import add_people
from tests.integration.inbox_helpers import waiting
from webhooks.api_v1 import ROLES, openapi
from webhooks.api_v1.openapi import WHO

NUMBER = "+447700900123"


@dataclass(frozen=True)
class Operation:
    """One method of one /api/v1 rule, as the url_map has it."""

    method: str
    path: str  # as the document writes it: /api/v1/conversations/{conversation_id}
    endpoint: str
    role: str

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path} ({self.endpoint})"


def operations(app: Flask) -> list[Operation]:
    return sorted((Operation(method.lower(), template(rule), rule.endpoint,
                             ROLES.get(rule.endpoint, "undeclared"))
                   for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api_v1.")
                   for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}),
                  key=str)


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json", base_url=API)
    assert response.status_code == 200
    served: dict[str, Any] = response.get_json()
    return served


@pytest.fixture
def tokens(sessions: sessionmaker[Session], app: Flask) -> dict[str, str]:
    return issue_tokens(sessions, add_people(sessions))


def documented(document: dict[str, Any], operation: Operation) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][operation.path][operation.method]
    return found


def example(document: dict[str, Any], operation: Operation) -> str:
    """The operation's path with a plausible value in each parameter (sirt, 1)."""
    item = document["paths"][operation.path]
    declared = [*item.get("parameters", []), *item.get(operation.method, {}).get(
        "parameters", [])]
    schemas = {p["name"]: p.get("schema", {}) for p in declared if p["in"] == "path"}

    def value(name: str) -> str:
        schema = schemas.get(name, {})
        if schema.get("type") == "integer":
            return str(schema.get("minimum") or 1)
        return "sirt"

    return re.sub(r"\{(\w+)\}", lambda m: value(m[1]), operation.path)


def guarded(app: Flask) -> list[Operation]:
    return [o for o in operations(app) if o.role != "public"]


# The document -----------------------------------------------------------------------------

def test_the_document_is_served_to_anyone_and_is_valid_openapi(
        app: Flask, client: FlaskClient, document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.0")
    assert document["info"]["version"] == version("petitionbot")
    assert "Authorization: Bearer <token>" in document["info"]["description"]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearerAuth": []}]
    itself = document["paths"]["/api/v1/openapi.json"]["get"]
    assert (itself["security"], itself["x-role"]) == ([], "public")
    again = client.get("/api/v1/openapi.json", base_url=API)
    assert again.get_json() == document and "Set-Cookie" not in again.headers
    with app.app_context():
        assert openapi.document() is openapi.document()  # built once, then kept


def test_every_api_route_and_method_is_documented_and_nothing_else(
        app: Flask, document: dict[str, Any]) -> None:
    served = operations(app)
    undocumented = [str(o) for o in served
                    if o.method not in document["paths"].get(o.path, {})]
    assert not undocumented, "API routes without documentation (a docstring with " \
        f"'---' and the operation in YAML): {undocumented}"
    methods = {"get", "put", "post", "delete", "patch"}
    stale = [f"{m.upper()} {path}" for path, item in document["paths"].items()
             for m in item if m in methods and (path, m) not in {(o.path, o.method)
                                                                 for o in served}]
    assert not stale, f"documented but not served: {stale}"
    assert not [str(o) for o in served if o.role == "undeclared"]


def test_every_operation_says_who_may_call_it_and_how_it_is_refused(
        app: Flask, document: dict[str, Any]) -> None:
    problems: list[str] = []
    for operation in operations(app):
        if operation.method not in document["paths"].get(operation.path, {}):
            continue  # named by the test above
        spec = documented(document, operation)
        responses = spec["responses"]
        said = {
            "a summary": bool(spec.get("summary")),
            f"x-role {operation.role}": spec.get("x-role") == operation.role,
            "a sentence and who may call it": spec.get("description", "").endswith(
                WHO[operation.role]) and len(spec["description"]) > len(WHO[operation.role]),
            "a success": any(code.startswith("2") for code in responses),
            "401": operation.role == "public" or "401" in responses,
            "403": operation.role in ("public", "viewer") or "403" in responses,
            "400 for its body": "requestBody" not in spec or "400" in responses,
        }
        problems += [f"{operation} lists no {what}" for what, ok in said.items() if not ok]
        for code, answer in responses.items():
            if code.startswith(("4", "5")) and not _an_error(document,
                                                              _schema_of(document, answer)):
                problems.append(f"{operation} {code} is not an error: {{\"error\": ...}}")
    assert not problems, "\n".join(problems)


def _schema_of(document: dict[str, Any], answer: dict[str, Any]) -> Any:
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer.get("content", {}).get("application/json", {}).get("schema")


def _an_error(document: dict[str, Any], schema: Any) -> bool:
    """Whether every body the schema allows is `{"error": "...", ...}` (Error, or one that
    adds to it, such as the field a 400 concerns)."""
    if not isinstance(schema, dict):
        return False
    if "$ref" in schema:
        return _an_error(document, document["components"]["schemas"][
            schema["$ref"].rsplit("/", 1)[1]])
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if alternatives:
        return all(_an_error(document, s) for s in alternatives)
    return "error" in schema.get("required", []) and schema.get("properties", {}).get(
        "error", {}).get("type") == "string"


# API-wide refusals, over the url_map ------------------------------------------------------

def test_without_a_good_token_every_route_is_401_in_json(
        app: Flask, client: FlaskClient, document: dict[str, Any], tokens: dict[str, str],
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        row = session.scalar(select(ApiToken).where(
            ApiToken.token_hash == api_tokens.token_hash(tokens["admin"])))
        assert row is not None
        api_tokens.revoke(session, row.id, row.created_at)
    for operation in guarded(app):
        path = example(document, operation)
        for token in (None, "pbt_not-a-real-token", tokens["admin"]):
            response = call(client, operation.method.upper(), path, token)
            assert response.status_code == 401, (str(operation), token)
            assert set(response.get_json()) == {"error"}
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_role_too_low_is_403_in_json_on_every_route(
        app: Flask, client: FlaskClient, document: dict[str, Any],
        tokens: dict[str, str]) -> None:
    order = ("viewer", "editor", "admin")
    checked = 0
    for operation in guarded(app):
        for lower in order[:order.index(operation.role)]:
            response = call(client, operation.method.upper(), example(document, operation),
                            tokens[lower], {})
            assert response.status_code == 403, (str(operation), lower)
            assert set(response.get_json()) == {"error"}
            assert operation.role in response.get_json()["error"]
            checked += 1
    assert checked  # the conversations' routes are for editors


def test_what_every_route_answers_a_bare_or_malformed_call_is_documented(
        app: Flask, client: FlaskClient, document: dict[str, Any],
        tokens: dict[str, str]) -> None:
    for operation in guarded(app):
        path, token = example(document, operation), tokens[operation.role]
        bodies: list[Any] = [None]
        if "requestBody" in document["paths"][operation.path].get(operation.method, {}):
            bodies += [["not", "an", "object"], "text"]
        for body in bodies:
            response = call(client, operation.method.upper(), path, token, body)  # conforms
            assert response.status_code < 500, (str(operation), body)
            if body is not None:  # refused, before or after looking the path's item up
                assert response.status_code in (400, 404), (str(operation), body)
            if response.status_code >= 400:
                assert isinstance(response.get_json()["error"], str), str(operation)


def test_an_unknown_api_path_or_method_is_a_json_error(
        app: Flask, client: FlaskClient, tokens: dict[str, str]) -> None:
    for method, path, status in (("GET", "/api/v1/nothing-here", 404),
                                 ("DELETE", "/api/v1/conversations", 405),
                                 ("POST", "/api/v1/conversations/0/close", 404)):
        response = call(client, method, path, tokens["admin"])
        assert response.status_code == status, path
        assert set(response.get_json()) == {"error"}


# Real answers against their documented schemas -------------------------------------------

def test_the_conversations_answers_match_their_documentation(
        client: FlaskClient, tokens: dict[str, str], sessions: sessionmaker[Session]) -> None:
    open_one = waiting(sessions, NUMBER, ["Is there a march?", "In London?"])
    late = waiting(sessions, "+447700900789", "Hello?", channel="whatsapp", wrote_hours_ago=30)
    waiting(sessions, "4242", "Thank you", channel="telegram", flagged=True)
    editor = tokens["editor"]
    assert len(call(client, "GET", "/api/v1/conversations", editor).get_json()["items"]) == 3
    made = call(client, "POST", f"/api/v1/conversations/{open_one}/messages", editor,
                {"text": "Yes, on Friday."})
    assert made.status_code == 201
    assert call(client, "POST", f"/api/v1/conversations/{late}/messages", editor,
                {"text": "We hear you."}).status_code == 409
    assert call(client, "POST", f"/api/v1/conversations/{open_one}/messages", editor,
                {"text": ""}).status_code == 400
    answered = call(client, "GET", "/api/v1/conversations?limit=200", editor).get_json()
    assert any(m["kind"] == "staff" for i in answered["items"] for m in i["messages"])
    assert call(client, "POST", f"/api/v1/conversations/{open_one}/close",
                editor).status_code == 200
    assert call(client, "GET", "/api/v1/conversations?status=closed", editor).get_json()[
        "items"]
    assert call(client, "GET", "/api/v1/conversations?limit=0", editor).status_code == 400


def test_the_petitions_answers_match_their_documentation(
        app: Flask, client: FlaskClient, tokens: dict[str, str]) -> None:
    assert call(client, "GET", "/api/v1/petitions/sirt", tokens["viewer"]).status_code == 200
    assert call(client, "GET", "/api/v1/petitions/nope", tokens["viewer"]).status_code == 404
    if not served(app, "patch", "/api/v1/petitions/{}"):
        pytest.skip("PATCH /api/v1/petitions/<slug> is not served yet")
    changed = call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"],
                   {"summary": "Fund SIRT for people with neuroendocrine tumours."})
    assert changed.status_code == 200
    assert call(client, "PATCH", "/api/v1/petitions/sirt", tokens["editor"],
                {"goal": "many"}).status_code == 400
    assert call(client, "PATCH", "/api/v1/petitions/nope", tokens["editor"],
                {"summary": "A summary."}).status_code == 404


def test_the_announcements_answers_match_their_documentation(
        app: Flask, client: FlaskClient, tokens: dict[str, str]) -> None:
    if not served(app, "post", "/api/v1/announcements"):
        pytest.skip("POST /api/v1/announcements is not served yet")
    made = call(client, "POST", "/api/v1/announcements", tokens["editor"],
                {"petition": "sirt", "text": "The petition goes to Parliament on 12 March."})
    assert made.status_code in (200, 201), made.get_json()
    path = f"/api/v1/announcements/{made.get_json()['id']}"
    assert call(client, "GET", path, tokens["admin"]).status_code == 200
    assert call(client, "PATCH", path, tokens["editor"],
                {"text": "The petition goes to Parliament on 13 March."}).status_code == 200
    assert call(client, "PATCH", path, tokens["editor"], {"text": ""}).status_code == 400
    assert call(client, "POST", "/api/v1/announcements", tokens["editor"],
                {"petition": "nope", "text": "Hello"}).status_code in (400, 404)
    assert call(client, "POST", f"{path}/approve", tokens["editor"]).status_code == 403
    assert call(client, "POST", f"{path}/approve", tokens["admin"]).status_code < 500
    assert call(client, "GET", path, tokens["admin"]).status_code == 200


def served(app: Flask, method: str, path: str) -> bool:
    """Whether some /api/v1 rule serves this method on this path ({} for any parameter)."""
    shape = re.compile(re.escape(path).replace(r"\{\}", r"\{\w+\}") + "$")
    return any(o.method == method and shape.match(o.path) for o in operations(app))


# The endpoints issue #15 adds (DESIGN §9) -------------------------------------------------

ISSUE_15 = [("get", "/api/v1/petitions/{}", "petitions"),
            ("patch", "/api/v1/petitions/{}", "petitions"),
            ("post", "/api/v1/announcements", "announcements"),
            ("patch", "/api/v1/announcements/{}", "announcements"),
            ("post", "/api/v1/announcements/{}/approve", "announcements"),
            ("get", "/api/v1/announcements/{}", "announcements")]


@pytest.mark.parametrize(("method", "path", "module"), ISSUE_15,
                         ids=[f"{m} {p}" for m, p, _ in ISSUE_15])
def test_each_endpoint_of_the_staff_api_is_served_and_documented(
        app: Flask, document: dict[str, Any], method: str, path: str, module: str) -> None:
    if importlib.util.find_spec(f"webhooks.api_v1.{module}") is None:
        pytest.skip(f"{method.upper()} {path}: webhooks/api_v1/{module}.py does not exist yet")
    assert served(app, method, path), f"{method.upper()} {path} is not served"
    shape = re.compile(re.escape(path).replace(r"\{\}", r"\{\w+\}") + "$")
    assert any(shape.match(p) and method in item for p, item in document["paths"].items())


def test_a_response_outside_the_documentation_fails_the_check(
        app: Flask, client: FlaskClient, tokens: dict[str, str]) -> None:
    """The checker itself: an undocumented status, or a body of the wrong shape, fails."""
    response = client.get("/api/v1/conversations", base_url=API,
                          headers={"Authorization": f"Bearer {tokens['editor']}"})
    response.status_code = 418
    with pytest.raises(AssertionError, match="does not list"):
        conforms(app, "GET", "/api/v1/conversations", response)
    response.status_code = 200
    response.set_data(b'{"items": [{"id": "one"}]}')
    with pytest.raises(AssertionError, match="does not match"):
        conforms(app, "GET", "/api/v1/conversations", response)
