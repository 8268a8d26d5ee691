"""Signatures per day as an inline SVG bar chart, drawn on the server (no script, no CDN).

The axes show true values. The count axis starts at zero (these are counts) and its ticks
are round numbers, 1, 2 or 5 x 10^k apart, up to the first tick at or above the busiest
day, each labelled with its real value. The date axis labels real days: every day, every
other day, Mondays, every other Monday, or the 1st of every 1, 2, 3 or 6 months, whichever
is the finest that fits without crowding.

The chart is drawn twice, for a wide and a narrow screen, and the stylesheet shows one:
an SVG drawn for a desktop only scales down on a phone, and its text with it, below what
anyone can read."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

CHAR_WIDTH = 0.62  # the width of a digit or letter, as a share of the font size (roughly)


@dataclass(frozen=True)
class Layout:
    """One drawing of the chart, sized so its text reads at about `font` px on the
    screens it is shown on (the viewBox is close to the width it is drawn at)."""

    name: str          # the CSS class that shows it: "wide" or "narrow"
    width: int
    height: int
    font: int
    intervals: int     # at most this many steps up the count axis


WIDE = Layout("wide", 960, 300, 14, 5)
NARROW = Layout("narrow", 360, 260, 14, 4)
TOP, RIGHT, GAP = 12, 12, 8


def count_ticks(busiest: int, intervals: int = 5) -> list[int]:
    """Round ticks from 0 up to the first at or above `busiest`: the smallest step of
    1, 2 or 5 x 10^k that needs at most `intervals` steps (0 and 1 when all are zero)."""
    if busiest <= 0:
        return [0, 1]
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            steps = math.ceil(busiest / step)
            if steps <= intervals:
                return [step * i for i in range(steps + 1)]
        magnitude *= 10


def _every(months: int) -> Callable[[dt.date], bool]:
    return lambda day: day.day == 1 and (day.month - 1) % months == 0


# From finest to coarsest; day -> whether it is labelled. Every other day and Monday is
# counted from a fixed origin, so a label stays on its day as the period moves on.
DATE_RULES: tuple[Callable[[dt.date], bool], ...] = (
    lambda day: True,
    lambda day: day.toordinal() % 2 == 0,
    lambda day: day.weekday() == 0,
    lambda day: day.weekday() == 0 and day.toordinal() // 7 % 2 == 0,
    *(_every(months) for months in (1, 2, 3, 6)),
    lambda day: day.month == 1 and day.day == 1,
)


def date_ticks(days: Sequence[dt.date], most: int) -> list[int]:
    """Indexes of the days to label: the finest rule giving 1 to `most` labels (else the
    first day alone)."""
    for rule in DATE_RULES:
        chosen = [i for i, day in enumerate(days) if rule(day)]
        if 0 < len(chosen) <= most:
            return chosen
    return [0] if days else []


def date_labels(days: Sequence[dt.date], ticks: Sequence[int]) -> list[str]:
    """'3 Nov'; with the year on the first label when the period spans two years, and on
    every label where the year changes."""
    labels, year = [], days[0].year if days and days[0].year == days[-1].year else None
    for i in ticks:
        day = days[i]
        labels.append(f"{day.day} {day:%b}" + ("" if day.year == year else f" {day.year}"))
        year = day.year
    return labels


def summary(points: Sequence[tuple[dt.date, int]]) -> str:
    """The chart in one sentence, for everyone who does not see it."""
    total = sum(v for _, v in points)
    text = f"{total:,} signatures in {len(points)} days"
    if points:
        text += f" ({_day(points[0][0])} to {_day(points[-1][0])})"
    busiest = max(points, key=lambda p: p[1]) if total else None
    return text + (f"; the busiest day was {_day(busiest[0])} with {busiest[1]:,}."
                   if busiest else ".")


def bar_chart(points: list[tuple[dt.date, int]], title: str) -> Markup:
    """The chart for a wide and a narrow screen, and its summary as a caption (for a
    <figure>); each bar also names its day and count on hover."""
    return Markup("".join([_svg(points, title, WIDE), _svg(points, title, NARROW),
                           f"<figcaption>{escape(summary(points))}</figcaption>"]))


def _svg(points: list[tuple[dt.date, int]], title: str, layout: Layout) -> str:
    ticks = count_ticks(max((v for _, v in points), default=0), layout.intervals)
    left = round(len(f"{ticks[-1]:,}") * layout.font * CHAR_WIDTH) + GAP * 2
    bottom = layout.font * 2 + GAP
    plot_w = layout.width - left - RIGHT
    plot_h = layout.height - TOP - bottom
    base = TOP + plot_h

    def y(value: int) -> float:
        return base - plot_h * value / ticks[-1]

    ident = f"chart-{layout.name}"
    parts = [f'<svg class="chart {layout.name}" viewBox="0 0 {layout.width} {layout.height}" '
             f'role="img" aria-labelledby="{ident}-title" font-size="{layout.font}">',
             f'<title id="{ident}-title">{escape(title)}</title>']
    for value in ticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{layout.width - RIGHT}" '
                     f'y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
                     f'<text class="axis" x="{left - GAP}" y="{y(value):.1f}" '
                     f'dy="0.35em" text-anchor="end">{value:,}</text>')
    step = plot_w / max(len(points), 1)
    for i, (day, value) in enumerate(points):
        parts.append(f'<rect class="bar" x="{left + step * (i + 0.1):.1f}" '
                     f'y="{y(value):.1f}" width="{max(step * 0.8, 0.6):.2f}" '
                     f'height="{base - y(value):.1f}"><title>{day:%a} {_day(day)}: '
                     f'{value:,}</title></rect>')
    parts.append(f'<line class="baseline" x1="{left}" x2="{layout.width - RIGHT}" '
                 f'y1="{base}" y2="{base}"/>')
    parts.extend(_date_axis([d for d, _ in points], layout, left, step, base))
    parts.append("</svg>")
    return "".join(parts)


def _date_axis(days: list[dt.date], layout: Layout, left: int, step: float,
               base: float) -> list[str]:
    """A tick under each labelled day's bar, its date below, kept inside the chart."""
    # Most labels are "30 Sep"; the odd one with its year is moved inside the edge.
    label_width = layout.font * CHAR_WIDTH * len("30 Sep.")
    plot_w = layout.width - left - RIGHT
    ticks = date_ticks(days, max(int(plot_w // (label_width + layout.font)), 1))
    parts = []
    for i, label in zip(ticks, date_labels(days, ticks), strict=True):
        x = left + step * (i + 0.5)
        half = len(label) * layout.font * CHAR_WIDTH / 2
        text_x = min(max(x, half + 2), layout.width - half - 2)
        parts.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" '
                     f'y2="{base + GAP / 2}"/><text class="axis" x="{text_x:.1f}" '
                     f'y="{base + GAP / 2 + layout.font * 1.2:.1f}" '
                     f'text-anchor="middle">{label}</text>')
    return parts


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"
