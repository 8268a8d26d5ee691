"""The issue, cut into pages that each fill one reply. Pure.

Rules: a page ends at the end of a sentence, unless that leaves it shorter than `at_least`
characters: then it is filled up word by word, and ends between two words (a word too
long for any page is cut). Paragraphs stay apart ("\n\n"); what counts as fitting is
the caller's (e.g. three GSM-7 segments with the page's number and choices).
"""

from __future__ import annotations

import re
from collections.abc import Callable

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def paginate(text: str, fits: Callable[[str], bool], at_least: int = 0) -> tuple[str, ...]:
    """`text` in pages that each fit, ending at a sentence's end where that leaves the page
    at least `at_least` characters long."""
    pages: list[str] = []
    page = ""
    for paragraph in (" ".join(p.split()) for p in text.split("\n\n")):
        if not paragraph:
            continue
        joint = "\n\n"
        for sentence in SENTENCE_END.split(paragraph):
            for piece in _pieces(sentence, fits):
                if page and len(page) < at_least and not fits(page + joint + piece):
                    # Too short to end here: fill it up with the sentence's first words.
                    words = piece.split(" ")
                    take = 0
                    while fits(page + joint + " ".join(words[: take + 1])):
                        take += 1
                    if take:
                        page += joint + " ".join(words[:take])
                        piece = " ".join(words[take:])
                    pages.append(page)
                    page, joint = piece, " "
                    continue
                longer = page + joint + piece if page else piece
                if fits(longer):
                    page = longer
                else:
                    pages.append(page)
                    page = piece
                joint = " "
    if page or not pages:
        pages.append(page)
    return tuple(pages)


def _pieces(sentence: str, fits: Callable[[str], bool]) -> list[str]:
    """The sentence whole if it fits a page, else cut between words into pieces that do."""
    pieces: list[str] = []
    while sentence and not fits(sentence):
        words = sentence.split(" ")
        take = 1
        while take < len(words) and fits(" ".join(words[: take + 1])):
            take += 1
        head = " ".join(words[:take])
        if not fits(head):  # one word longer than a page: cut it where it must be
            end = 1
            while end < len(head) and fits(head[: end + 1]):
                end += 1
            head = head[:end]
        pieces.append(head)
        sentence = sentence[len(head):].strip()
    if sentence:
        pieces.append(sentence)
    return pieces
