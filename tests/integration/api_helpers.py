"""The staff API called as an integration would call it, every answer held to the API's
OpenAPI document: a status its operation does not list, or a body not in the documented
shape, fails the test that received it."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

from apispec_webframeworks.flask import FlaskPlugin
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from bot.shell import api_tokens
from models import StaffUser
from webhooks.api_v1 import openapi

API = "https://petition.example.org"
DOCUMENT = "urn:petitionbot:openapi"  # the document's name in the schema registry
ROLES = ("viewer", "editor", "admin")


def issue_tokens(sessions: sessionmaker[Session], staff_ids: dict[str, int]) -> dict[str, str]:
    """One token per role: role -> token."""
    made: dict[str, str] = {}
    with sessions.begin() as session:
        for role in ROLES:
            user = session.get(StaffUser, staff_ids[role])
            assert user is not None
            made[role] = api_tokens.issue(session, user, f"{role}'s script",
                                          dt.datetime.now(dt.UTC)).secret
    return made


def document(app: Flask) -> dict[str, Any]:
    with app.app_context():
        return openapi.document()


def template(rule: Rule) -> str:
    """The rule's path as the document writes it (/conversations/{conversation_id})."""
    return FlaskPlugin.flaskpath2openapi(rule.rule)


def call(client: FlaskClient, method: str, path: str, token: str | None = None,
         body: Any = None, **headers: str) -> TestResponse:
    """Call the API (JSON body, bearer token) and check the answer against the document."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = client.open(path, method=method, json=body, headers=headers, base_url=API)
    conforms(client.application, method, path, response)
    return response


def conforms(app: Flask, method: str, path: str, response: TestResponse) -> None:
    """The answer is one the operation's documentation lists, in the documented shape.
    A path no rule matches is answered by Flask itself: a JSON Error. An operation with no
    documentation at all is left to test_openapi, which names every one."""
    doc = document(app)
    try:
        rule, _ = app.url_map.bind("localhost").match(
            urlsplit(path).path, method=method, return_rule=True)
    except HTTPException:
        _validate(doc, ["components", "schemas", "Error"], response, f"{method} {path}")
        return
    where = f"{method} {template(rule)}"
    operation = doc["paths"].get(template(rule), {}).get(method.lower())
    if operation is None:
        return
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{where} answered {status}, which its documentation does not list: "
        f"{response.get_data(as_text=True)[:200]}")
    pointer = ["paths", template(rule), method.lower(), "responses", status]
    answer = operation["responses"][status]
    if "$ref" in answer:
        pointer = answer["$ref"].removeprefix("#/").split("/")
        answer = _at(doc, pointer)
    if "application/json" in answer.get("content", {}):
        _validate(doc, [*pointer, "content", "application/json", "schema"], response,
                  f"{where} {status}")


def _at(doc: dict[str, Any], pointer: list[str]) -> Any:
    found: Any = doc
    for part in pointer:
        found = found[part]
    return found


def _validate(doc: dict[str, Any], pointer: list[str], response: TestResponse,
              where: str) -> None:
    """Validate the JSON body against the schema at `pointer`, its $refs resolved in the
    document (OpenAPI 3.0's dialect: nullable, formats)."""
    assert response.is_json, f"{where}: not JSON"
    registry: Registry[Any] = Registry().with_resource(DOCUMENT, DRAFT4.create_resource(doc))
    escaped = "/".join(p.replace("~", "~0").replace("/", "~1") for p in pointer)
    validator = OAS30Validator({"$ref": f"{DOCUMENT}#/{escaped}"}, registry=registry,
                               format_checker=oas30_format_checker)
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
              for e in validator.iter_errors(response.get_json())]
    assert not errors, f"{where} does not match its documented schema: {errors}"
