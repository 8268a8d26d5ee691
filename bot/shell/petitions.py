"""Petition content as the conversation sees it: views with live counts, paged issue text."""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.core.conversation import PetitionView
from bot.infra.config import Petition

# A page plus its "(Page 2 of 5)" line and the choices fits in three SMS segments.
PAGE_LIMIT = 330
# WhatsApp and Telegram messages can be longer: the whole issue in one or two screens.
LONG_PAGE_LIMIT = 1000
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def paginate(text: str, limit: int = PAGE_LIMIT) -> tuple[str, ...]:
    """Split text into pages of whole paragraphs (or sentences, or words) under `limit`."""
    pieces: list[str] = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        paragraph = " ".join(paragraph.split())
        if len(paragraph) <= limit:
            pieces.append(paragraph)
            continue
        for sentence in SENTENCE_END.split(paragraph):
            while len(sentence) > limit:
                cut = sentence.rfind(" ", 0, limit) if " " in sentence[:limit] else limit
                pieces.append(sentence[:cut])
                sentence = sentence[cut:].strip()
            pieces.append(sentence)
    pages: list[str] = []
    for piece in pieces:
        if pages and len(pages[-1]) + 2 + len(piece) <= limit:
            pages[-1] += "\n\n" + piece
        else:
            pages.append(piece)
    return tuple(pages) or ("",)


class Catalogue:
    """Builds petition views from config content and the counts the shell reads."""

    def __init__(self, petitions: tuple[Petition, ...]) -> None:
        self.petitions = petitions
        self.pages = {p.slug: paginate(p.issue) for p in petitions}
        self.long_pages = {p.slug: paginate(p.issue, LONG_PAGE_LIMIT) for p in petitions}

    def views(self, counts: Mapping[str, int],
              voices: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
              long_pages: bool = False) -> dict[str, PetitionView]:
        """Every petition as the core sees it; `long_pages` for channels without SMS limits."""
        voices = voices or {}
        return {p.slug: self.view(p, counts.get(p.slug, 0), voices.get(p.slug, ()), long_pages)
                for p in self.petitions}

    def view(self, p: Petition, here: int, voices: tuple[tuple[str, str], ...] = (),
             long_pages: bool = False) -> PetitionView:
        return PetitionView(
            slug=p.slug, code=p.code, title=p.title, summary=p.summary,
            pages=(self.long_pages if long_pages else self.pages)[p.slug],
            decision_makers=_and(p.decision_makers),
            organiser=p.organiser, created=p.created, here=here,
            external=tuple((e.source, e.count) for e in p.external), share_url=p.share_url,
            voices=voices)


def _and(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
