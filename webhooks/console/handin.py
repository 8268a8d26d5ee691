"""Hand-in: the signatures as a streamed CSV (admins), and a summary by nation and
postcode area for the decision maker (a page and a CSV). Signatures collected on paper and
imported count with the rest, each source on a line of its own; their places are known
(a paper signature has a UK postcode), so they are in the places too."""

from __future__ import annotations

import csv
import io
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any, TextIO, cast

from flask import Response, render_template, stream_with_context
from sqlalchemy.orm import Session

from bot.shell.dashboard import by_area, by_nation, paper_sources, places, totals
from bot.shell.export import safe_cell, write_signatures
from models.db import long_read
from models.supporters import petition_id
from webhooks.console.access import now, petition_asked, record, route
from webhooks.console.forms import NATIONS
from webhooks.runtime import runtime

log = logging.getLogger("petitionbot.staff")
CHUNK = 64 * 1024
NATION_NAMES = dict(NATIONS)


@route("/handin", "viewer")
def handin() -> Any:
    slug = petition_asked()
    rt = runtime()
    with rt.sessions() as session:
        content = rt.service.content(session).petition(slug)
        top = totals(session, content)
        pid = petition_id(session, slug) or 0
        rows = places(session, pid)
        paper = paper_sources(session, pid) if top.paper else []
    return render_template("staff/handin.html", t=top, nations=by_nation(rows),
                           areas=sorted(by_area(rows)), names=NATION_NAMES,
                           petition=content, generated=now(), paper=paper)


@route("/handin/summary.csv", "viewer")
def summary_csv() -> Any:
    slug = petition_asked()
    rt = runtime()
    with rt.sessions() as session:
        top = totals(session, rt.service.content(session).petition(slug))
        pid = petition_id(session, slug) or 0
        rows = places(session, pid)
        paper = paper_sources(session, pid) if top.paper else []
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["petition", safe_cell(top.title)])
    writer.writerow(["generated_at", now().isoformat()])
    writer.writerow(["signatures_here", top.by_bot])  # by SMS, WhatsApp and Telegram
    for source, count in paper:
        writer.writerow([safe_cell(f"signatures_on_paper_{source}"), count])
    for source, count in top.external:
        writer.writerow([safe_cell(f"signatures_on_{source}"), count])
    writer.writerow(["total", top.total])
    writer.writerow([])
    writer.writerow(["nation", "postcode_area", "signatures"])
    for nation, area, count in rows:
        writer.writerow([safe_cell(NATION_NAMES.get(nation, nation)), safe_cell(area or ""),
                         count])
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{slug}-summary.csv"'})


@route("/handin/signatures.csv", "admin")
def signatures_csv() -> Any:
    """Every signature, streamed as it is read (constant memory at any size)."""
    slug = petition_asked()
    with runtime().sessions.begin() as session:
        record(session, "export.signatures", f"petition:{slug}", {"format": "csv"})
    return Response(stream_with_context(_stream(slug)), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{slug}-signatures.csv"'})


class _Cancelled(Exception):
    """The download was abandoned: stop reading."""


class _Pipe(io.TextIOBase):
    """A text file whose writes come out, in chunks, of a queue on the other side."""

    def __init__(self, chunks: queue.Queue[Any], stop: threading.Event) -> None:
        self.chunks, self.stop = chunks, stop
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= CHUNK:
            self.push()
        return len(text)

    def push(self) -> None:
        chunk, self.parts, self.size = "".join(self.parts), [], 0
        while not self.stop.is_set():
            try:
                self.chunks.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Cancelled


_DONE = object()


def _stream(slug: str) -> Iterator[str]:
    """write_signatures runs in a thread writing into a bounded queue; we yield from it."""
    chunks: queue.Queue[Any] = queue.Queue(maxsize=16)
    stop = threading.Event()
    engine = runtime().engine

    def produce() -> None:
        pipe = _Pipe(chunks, stop)
        try:
            with long_read(engine) as connection, Session(connection) as session:
                write_signatures(session, slug, "csv", cast(TextIO, pipe))
            pipe.push()
        except _Cancelled:
            return
        except Exception as error:  # surfaced in the response's thread
            log.exception("signature export failed")
            chunks.put(error)
        chunks.put(_DONE)

    worker = threading.Thread(target=produce, name="signature-export", daemon=True)
    worker.start()
    try:
        while True:
            item = chunks.get()
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()


