"""The dashboard's chart: round count ticks from zero that reach the busiest day, dates
labelled on real days without crowding, and the same figures in words."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from webhooks.console.charts import (
    NARROW,
    WIDE,
    bar_chart,
    count_ticks,
    date_labels,
    date_ticks,
    summary,
)

MONDAY = dt.date(2026, 11, 2)


def days(first: dt.date, n: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(n)]


@pytest.mark.parametrize(("busiest", "intervals", "ticks"), [
    (0, 5, [0, 1]),
    (1, 5, [0, 1]),
    (3, 5, [0, 1, 2, 3]),
    (5, 5, [0, 1, 2, 3, 4, 5]),
    (7, 5, [0, 2, 4, 6, 8]),
    (10, 5, [0, 2, 4, 6, 8, 10]),
    (11, 5, [0, 5, 10, 15]),
    (120, 5, [0, 50, 100, 150]),
    (1_234, 5, [0, 500, 1_000, 1_500]),
    (49_257, 5, [0, 10_000, 20_000, 30_000, 40_000, 50_000]),
    (7, 4, [0, 2, 4, 6, 8]),
    (9, 4, [0, 5, 10]),
])
def test_count_ticks_are_round_start_at_zero_and_reach_the_busiest_day(
        busiest: int, intervals: int, ticks: list[int]) -> None:
    assert count_ticks(busiest, intervals) == ticks


@pytest.mark.parametrize("busiest", [1, 2, 3, 7, 9, 19, 99, 101, 999, 4_321, 77_777])
@pytest.mark.parametrize("intervals", [4, 5])
def test_count_ticks_hold_for_any_busiest_day(busiest: int, intervals: int) -> None:
    ticks = count_ticks(busiest, intervals)
    step = ticks[1]
    assert ticks[0] == 0 and ticks[-1] >= busiest > ticks[-2]
    assert ticks == list(range(0, ticks[-1] + 1, step))
    assert len(ticks) - 1 <= intervals
    assert re.fullmatch(r"[125]0*", str(step))


def test_a_week_labels_every_day_when_there_is_room_and_every_other_when_not() -> None:
    week = days(MONDAY, 7)
    assert date_labels(week, date_ticks(week, 10)) == [
        "2 Nov", "3 Nov", "4 Nov", "5 Nov", "6 Nov", "7 Nov", "8 Nov"]
    assert len(date_ticks(week, 4)) == 4  # every other day


def test_two_months_label_mondays_or_the_first_of_each_month() -> None:
    period = days(dt.date(2026, 10, 1), 62)
    mondays = date_ticks(period, 10)
    assert all(period[i].weekday() == 0 for i in mondays) and len(mondays) == 9
    assert date_labels(period, date_ticks(period, 3)) == ["1 Oct", "1 Nov", "1 Dec"]


def test_a_year_shows_the_year_where_it_changes() -> None:
    year = days(dt.date(2026, 3, 1), 365)
    assert date_labels(year, date_ticks(year, 4)) == [
        "1 Apr 2026", "1 Jul", "1 Oct", "1 Jan 2027"]


@pytest.mark.parametrize("n", [1, 2, 7, 30, 60, 90, 365, 1_000])
@pytest.mark.parametrize("most", [2, 4, 13])
def test_date_ticks_never_crowd_and_always_label_something(n: int, most: int) -> None:
    period = days(dt.date(2026, 1, 15), n)
    ticks = date_ticks(period, most)
    assert 1 <= len(ticks) <= most and ticks == sorted(set(ticks))


def test_the_summary_names_the_period_the_total_and_the_busiest_day() -> None:
    points = [(day, n) for day, n in zip(days(MONDAY, 3), [2, 1_205, 0], strict=True)]
    assert summary(points) == ("1,207 signatures in 3 days (2 Nov 2026 to 4 Nov 2026); "
                               "the busiest day was 3 Nov 2026 with 1,205.")
    assert summary([(MONDAY, 0)]) == "0 signatures in 1 days (2 Nov 2026 to 2 Nov 2026)."


def test_the_chart_labels_axes_with_real_values_for_both_screens() -> None:
    points = [(day, 1_230 if i == 10 else i) for i, day in enumerate(days(MONDAY, 30))]
    svg = str(bar_chart(points, "Signatures per day"))
    assert svg.count("<svg") == 2 and 'class="chart wide"' in svg
    assert 'class="chart narrow"' in svg and svg.count('role="img"') == 2
    axis = re.findall(r'<text class="axis"[^>]*>([^<]+)</text>', svg)
    assert {"0", "500", "1,000", "1,500"} <= set(axis)
    assert "9 Nov" in axis and "16 Nov" in axis
    assert "<title>Thu 12 Nov 2026: 1,230</title>" in svg
    assert "<figcaption>1,655 signatures in 30 days" in svg


def test_the_tallest_bar_stops_at_its_value_not_at_the_top_of_the_axis() -> None:
    svg = str(bar_chart([(MONDAY, 7)], "Signatures per day"))
    wide = svg.split("</svg>")[0]
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]*height="([\d.]+)"', wide)]
    grid = sorted(float(y) for y in re.findall(r'<line class="grid"[^>]*y1="([\d.]+)"', wide))
    plot = grid[-1] - grid[0]  # from the top tick (8) down to zero
    assert heights == [pytest.approx(plot * 7 / 8, abs=0.2)]


def test_both_layouts_leave_room_for_their_labels() -> None:
    assert NARROW.width < WIDE.width and NARROW.font >= 12 and WIDE.font >= 12
