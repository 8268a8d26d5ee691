"""The signatures feed (DESIGN §9), for admins only: it holds personal data.

A page is streamed: its JSON is written out batch by batch as the rows are read
(bot.shell.signature_feed), so the largest page never sits in memory whole. Everything
that can refuse the request (the token, the petition, the cursor, the limit) is settled
before the first byte; each page read is in the audit log under the token's staff member,
as the console's export is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from flask import Response, request, stream_with_context
from sqlalchemy import Engine

from bot.shell import signature_feed
from bot.shell import staff as accounts
from bot.shell.signature_feed import Page
from models.db import long_read
from models.supporters import petition_id
from webhooks.api_v1.auth import caller, now, refuse, refuse_field, route
from webhooks.runtime import runtime

log = logging.getLogger("petitionbot.api")

_CURSOR = {"type": "string", "nullable": True,
           "description": "an opaque cursor: pass it back as `after`"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "FeedSignature": {
        "type": "object",
        "description": "A current signature, as the supporter gave it.",
        "properties": {
            "id": {"type": "integer", "description": "the signature's id"},
            "number": {"type": "integer", "minimum": 1,
                       "description": "its place in the petition's signing order (the "
                                      "number the supporter was told); never reused"},
            "supporter": {"type": "integer", "description": "the supporter's id"},
            "name": {"type": "string"},
            "postcode": {"type": "string", "nullable": True},
            "country": {"type": "string", "nullable": True,
                        "description": "for a signature from outside the UK"},
            "nation": {"type": "string",
                       "description": "england, scotland, wales, northern_ireland, "
                                      "crown_dependencies, bfpo or outside_uk"},
            "channel": {"type": "string", "enum": ["sms", "whatsapp", "telegram", "paper"],
                        "description": "paper: collected on paper and imported"},
            "source": {"type": "string", "nullable": True,
                       "description": "where a paper signature was collected (e.g. Leeds "
                                      "march); null for the others"},
            "referral": {"type": "string", "nullable": True,
                         "description": "the share code or campaign it came through"},
            "signed_at": {"type": "string", "format": "date-time"},
        },
        "required": ["id", "number", "supporter", "name", "postcode", "country", "nation",
                     "channel", "source", "referral", "signed_at"],
        "additionalProperties": False,
    },
    "SignatureFeed": {
        "type": "object",
        "description": "A page of a petition's signatures, in the order they were made.",
        "properties": {
            "items": {"type": "array",
                      "items": {"$ref": "#/components/schemas/FeedSignature"}},
            "next": {**_CURSOR, "description": "the next page's cursor; null when this page "
                                               "reached the newest signature"},
            "resume": {**_CURSOR, "description": "where this page ended (null: nothing read "
                                                 "yet): keep it, and ask later with "
                                                 "after=resume for the signatures made since"},
        },
        "required": ["items", "next", "resume"],
        "additionalProperties": False,
    },
}


@route("/signatures", "admin", methods=["GET"])
def signatures() -> Any:
    """A petition's current signatures in the order they were made, a page at a time.
    ---
    get:
      summary: Read the signatures feed
      description: >-
        A petition's current signatures in the order they were made, a page at a time.
        Start without `after`, then pass each page's `next` as `after` until `next` is
        null: every current signature comes exactly once, even while people sign and
        withdraw. To fetch only what is signed later, keep the last page's `resume` and
        pass it as `after` next time. A withdrawn signature is erased: no page read after
        that returns it. Each page read is recorded in the audit log.
      parameters:
        - in: query
          name: petition
          required: true
          description: the petition's slug
          schema: {type: string}
        - in: query
          name: after
          description: a cursor this feed gave (`next` or `resume`); none for the start
          schema: {type: string}
        - in: query
          name: limit
          description: the most signatures in the page
          schema: {type: integer, minimum: 1, maximum: 10000, default: 1000}
      responses:
        200:
          description: The page, streamed as it is read.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/SignatureFeed'}
        400:
          description: No petition named, or a cursor or limit that cannot be used
            (`field` names it).
          content:
            application/json:
              schema: {$ref: '#/components/schemas/FieldError'}
        404:
          description: No petition has this slug.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
    """
    slug = request.args.get("petition")
    if not slug:
        refuse_field("petition", "petition: the slug of the petition whose signatures you want")
    rt = runtime()
    with rt.sessions.begin() as session:
        try:
            rt.service.content(session).petition(slug)  # staff may have created it
        except KeyError:
            refuse(404, "no such petition")
        try:
            after = signature_feed.position(slug, request.args.get("after"))
            limit = signature_feed.page_size(request.args.get("limit"))
        except signature_feed.Invalid as error:
            refuse_field(error.field, str(error))
        row_id = petition_id(session, slug)
        accounts.audit(session, caller().email, "export.signatures", f"petition:{slug}",
                       {"via": "api", "after": after, "limit": limit}, now())
    return Response(stream_with_context(_stream(rt.engine, slug, row_id, after, limit)),
                    mimetype="application/json")


def _stream(engine: Engine, slug: str, row_id: int | None, after: int,
            limit: int) -> Iterator[str]:
    """The page's JSON, a batch of items at a time."""
    with long_read(engine) as connection:
        page = Page(connection, slug, row_id, after, limit)
        yield '{"items": ['
        separator = ""
        try:
            for batch in page:
                yield separator + _dumps(batch)[1:-1]  # the items, without the list's [ ]
                separator = ", "
        except Exception:
            # Too late for an error status: the body stops short, which no JSON parser
            # accepts, so the client cannot mistake it for the whole page.
            log.exception("the signatures feed failed mid-page")
            raise
        yield f'], "next": {_dumps(page.next)}, "resume": {_dumps(page.resume)}}}'


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)




__all__ = ["signatures"]
