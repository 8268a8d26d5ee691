"""A bar chart as inline SVG, drawn on the server (no script, no CDN)."""

from __future__ import annotations

import datetime as dt
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 26


def bar_chart(points: list[tuple[dt.date, int]], title: str) -> Markup:
    """Bars per day; each bar has a tooltip, the whole chart a text summary."""
    n = max(len(points), 1)
    top = max((v for _, v in points), default=0)
    scale_top = _nice(top)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / n
    total = sum(v for _, v in points)
    busiest = max(points, key=lambda p: p[1]) if points and top else None
    summary = f"{total:,} signatures in {len(points)} days" + (
        f"; the busiest day was {busiest[0]:%d %b %Y} with {busiest[1]:,}." if busiest else ".")
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMinYMin meet">',
             f'<title id="chart-title">{escape(title)}</title>',
             f'<desc id="chart-desc">{escape(summary)}</desc>']
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{int(scale_top * fraction):,}</text>')
    for i, (day, value) in enumerate(points):
        h = plot_h * value / scale_top if scale_top else 0
        x = LEFT + i * step
        parts.append(f'<rect class="bar" x="{x + step * 0.1:.1f}" y="{TOP + plot_h - h:.1f}" '
                     f'width="{max(step * 0.8, 1):.1f}" height="{h:.1f}">'
                     f'<title>{day:%a %d %b %Y}: {value:,}</title></rect>')
    for i in sorted({0, len(points) // 2, len(points) - 1}):
        if 0 <= i < len(points):
            x = LEFT + i * step + step / 2
            anchor = "start" if i == 0 else "end" if i == len(points) - 1 else "middle"
            parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" '
                         f'text-anchor="{anchor}">{points[i][0]:%d %b}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(value: int) -> int:
    """A round number at or above value for the top of the axis (1, 2, 5 x 10^k)."""
    if value <= 0:
        return 0
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= value:
                return factor * magnitude
        magnitude *= 10
