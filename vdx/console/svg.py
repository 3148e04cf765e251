"""Pictures drawn on the server as inline SVG: a grouped bar chart and a timeline with
one lane per party. No script, no external resource, colours from the console's
stylesheet (classes ``s-<series>``); every text is escaped here.

Both return markup ready to embed (:class:`markupsafe.Markup`), with a ``<title>`` on
each mark so that hovering shows the exact figure, and ``role="img"`` with a label for
screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at least ``value`` (1 for 0): the chart's top."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class Series:
    key: str  # CSS class suffix and the value's name
    label: str


def bar_chart(labels: Sequence[str], series: Sequence[Series],
              values: Sequence[Sequence[int]], *, caption: str,
              number=str, label_every: int = 5, width: int = 760,
              height: int = 240) -> Markup:
    """Grouped bars: for each of ``labels`` (x), one bar per series; ``values[i][j]`` is
    series ``j`` at label ``i``. ``number`` formats figures for the axis and titles."""
    left, right, top, bottom = 52, 8, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = nice_ceiling(max((v for row in values for v in row), default=0))
    group = plot_w / max(len(labels), 1)
    bar = max(group * 0.8 / max(len(series), 1), 1.0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'aria-label="{_e(caption)}"><title>{_e(caption)}</title>']
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" '
                   f'y2="{y:.1f}"/><text class="axis" x="{left - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{_e(number(int(peak * fraction)))}</text>')
    for i, (label, row) in enumerate(zip(labels, values, strict=True)):
        x0 = left + i * group + group * 0.1
        for j, (s, value) in enumerate(zip(series, row, strict=True)):
            h = plot_h * value / peak
            out.append(f'<rect class="s-{_e(s.key)}" x="{x0 + j * bar:.1f}" '
                       f'y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                       f'<title>{_e(label)}: {_e(s.label)} {_e(number(value))}</title></rect>')
        if i % label_every == 0 or i == len(labels) - 1:
            out.append(f'<text class="axis" x="{left + (i + 0.5) * group:.1f}" '
                       f'y="{height - bottom + 16}" text-anchor="middle">{_e(label)}</text>')
    out.append(f'<line class="axis-line" x1="{left}" x2="{width - right}" '
               f'y1="{top + plot_h}" y2="{top + plot_h}"/>')
    for j, s in enumerate(series):
        x = left + j * 130
        out.append(f'<rect class="s-{_e(s.key)}" x="{x}" y="{height - 12}" width="10" '
                   f'height="10"/><text class="legend" x="{x + 14}" y="{height - 3}">'
                   f'{_e(s.label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


@dataclass(frozen=True)
class Mark:
    """One event on a lane: ``kind`` picks its colour (``s-<kind>``), ``short`` is
    written beside it, ``title`` shown on hover."""

    lane: str
    kind: str
    short: str
    title: str


def timeline(lanes: Sequence[str], marks: Sequence[Mark], *, caption: str,
             lane_labels: dict[str, str] | None = None) -> Markup:
    """Marks in order from left to right, each on its lane (one row per party)."""
    lane_labels = lane_labels or {}
    step, left, top, row = 58, 190, 16, 40
    width = max(left + step * (len(marks) + 1), 480)
    height = top + row * max(len(lanes), 1) + 8
    y_of = {lane: top + row * i + row / 2 for i, lane in enumerate(lanes)}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'aria-label="{_e(caption)}"><title>{_e(caption)}</title>']
    for lane, y in y_of.items():
        out.append(f'<line class="lane" x1="{left - 10}" x2="{width - 10}" y1="{y:.1f}" '
                   f'y2="{y:.1f}"/><text class="lane-label" x="{left - 16}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{_e(lane_labels.get(lane, lane))}</text>')
    previous: tuple[float, float] | None = None
    for i, mark in enumerate(marks):
        x, y = left + step * (i + 0.5), y_of.get(mark.lane, top + row / 2)
        if previous is not None:
            out.append(f'<line class="hop" x1="{previous[0]:.1f}" y1="{previous[1]:.1f}" '
                       f'x2="{x:.1f}" y2="{y:.1f}"/>')
        previous = (x, y)
    for i, mark in enumerate(marks):
        x, y = left + step * (i + 0.5), y_of.get(mark.lane, top + row / 2)
        out.append(f'<g class="mark"><circle class="s-{_e(mark.kind)}" cx="{x:.1f}" '
                   f'cy="{y:.1f}" r="8"><title>{_e(mark.title)}</title></circle>'
                   f'<text class="mark-label" x="{x:.1f}" y="{y - 12:.1f}" '
                   f'text-anchor="middle">{_e(mark.short)}</text></g>')
    out.append("</svg>")
    return Markup("".join(out))
