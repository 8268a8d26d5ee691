"""Petition content as the conversation sees it: views with live counts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from bot.core.conversation import PetitionView
from bot.infra.config import Petition


class Catalogue:
    """Builds petition views from config content and the counts the shell reads."""

    def __init__(self, petitions: tuple[Petition, ...]) -> None:
        self.petitions = petitions

    def views(self, counts: Mapping[str, int],
              voices: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
              today: date | None = None) -> dict[str, PetitionView]:
        """Every petition as the core sees it (closed: on or before `today`)."""
        voices = voices or {}
        return {p.slug: self.view(p, counts.get(p.slug, 0), voices.get(p.slug, ()), today)
                for p in self.petitions}

    def view(self, p: Petition, here: int, voices: tuple[tuple[str, str], ...] = (),
             today: date | None = None) -> PetitionView:
        closed = p.closed if p.closed is not None and (today is None or p.closed <= today) \
            else None
        return PetitionView(
            slug=p.slug, code=p.code, title=p.title, summary=p.summary, issue=p.issue,
            decision_makers=_and(p.decision_makers),
            organiser=p.organiser, created=p.created, here=here,
            external=tuple((e.source, e.count) for e in p.external), share_url=p.share_url,
            voices=voices, closed=closed)


def _and(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
