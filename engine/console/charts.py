"""Charts drawn on the server as SVG for the console's report pages: no script, no CDN, works
offline under the console's `script-src 'none'`. Every label and tooltip passes through
`escape`, because names come from customer data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, LABEL, ROW, TOP = 640, 180, 28, 12
"""Bar charts' geometry in pixels: total width, the labels' column, a row per bar, the top margin."""
HEIGHT, LEFT, BOTTOM = 220, 40, 30
"""Line charts' geometry: total height, the axis' column, the dates' row."""


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its value, the text shown after it, and whether it is highlighted."""

    label: str
    value: float
    text: str
    key: str = ""
    highlight: bool = False
    colour: str = ""
    """The bar's fill when it stands for something coloured elsewhere (a band); default blue."""


def bar_chart(bars: Sequence[Bar], title: str, css: str = "bars") -> Markup:
    """A horizontal bar per item, scaled to the largest value; highlighted bars drawn in red."""
    top = max([b.value for b in bars] + [1.0])
    plot = WIDTH - LABEL - 90
    height = TOP + ROW * len(bars) + 8
    parts = [
        f'<svg class="{escape(css)}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">'
    ]
    for i, b in enumerate(bars):
        mid = TOP + ROW * i + ROW / 2
        width = plot * max(b.value, 0.0) / top
        colour = "#c5221f" if b.highlight else b.colour or "#1f3a5f"
        css_class = "bar highlight" if b.highlight else "bar"
        parts.append(
            f'<g class="{css_class}" data-key="{escape(b.key or b.label)}">'
            f"<title>{escape(f'{b.label}: {b.text}')}</title>"
            f'<text x="{LABEL - 8}" y="{mid + 4:.1f}" font-size="12" text-anchor="end">{escape(_short(b.label))}</text>'
            f'<rect x="{LABEL}" y="{mid - 9:.1f}" width="{width:.1f}" height="18" fill="{colour}" opacity="0.7"/>'
            f'<text x="{LABEL + width + 6:.1f}" y="{mid + 4:.1f}" font-size="12">{escape(b.text)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(points: Sequence[tuple[str, float]], title: str, low: float = 0.0, high: float = 100.0) -> Markup:
    """A line through `(label, value)` points on a fixed scale from `low` to `high`, a dot per
    point with its label and value as a tooltip."""
    plot_w, plot_h = WIDTH - LEFT - 20, HEIGHT - TOP - BOTTOM
    span = (high - low) or 1.0

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (min(max(value, low), high) - low) / span)

    parts = [
        f'<svg class="line" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
    ]
    for tick in range(5):
        value = low + span * tick / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{WIDTH - 20}" y2="{y(value):.1f}" stroke="#e0e0e0"/>'
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" font-size="10" text-anchor="end" fill="#5f6368">'
            f"{value:g}</text>"
        )
    if points:
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(points))
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1f3a5f" stroke-width="2"/>')
        for i, (label, value) in enumerate(points):
            parts.append(
                f'<circle class="point" cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="#1f3a5f">'
                f"<title>{escape(f'{label}: {value:.1f}')}</title></circle>"
            )
        for i in sorted({0, len(points) - 1}):
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - 10}" font-size="10" text-anchor="middle" fill="#5f6368">'
                f"{escape(points[i][0])}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


GOOD, BAD, UNKNOWN = "#188038", "#c5221f", "#5f6368"
"""The colours of the best band, the worst, and a band the model no longer declares."""
BETWEEN = ("#e37400", "#f9ab00", "#9334e6", "#12b5cb")
"""The colours of the bands between the best and the worst, in order (cycled past four)."""


def band_colours(count: int) -> list[str]:
    """A colour per band of a model, best first: green for the best, red for the worst, distinct
    colours between; the same band keeps its colour on every chart of a page."""
    if count <= 1:
        return [GOOD] * count
    return [GOOD, *(BETWEEN[i % len(BETWEEN)] for i in range(count - 2)), BAD]


@dataclass(frozen=True)
class Series:
    """One line of a trend chart: its key (`data-key`), its label, a value per day, its colour."""

    key: str
    label: str
    values: Sequence[float]
    colour: str


def band_trend_chart(days: Sequence[str], series: Sequence[Series], title: str, chart_id: str) -> Markup:
    """A line per series over `days` (one value per day each), scaled from 0 to the largest
    value, with a legend under the dates. Named for assistive technology by `<title>` and a
    `<desc>` that says each line's first and last value; `chart_id` keeps their ids unique."""
    plot_w, plot_h = WIDTH - LEFT - 20, HEIGHT - TOP - BOTTOM
    legend_rows = (len(series) + 3) // 4
    height = HEIGHT + 20 * legend_rows
    # Counts: the top rounded up to a multiple of the four gridline steps, so every tick is whole.
    top = float(math.ceil(max([v for s in series for v in s.values] + [1.0]) / 4) * 4)

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - min(max(value, 0.0), top) / top)

    ident = escape(chart_id)
    parts = [
        f'<svg class="band-trend" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="{ident}-title {ident}-desc">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(_describe(days, series))}</desc>'
    ]
    for tick in range(5):
        value = top * tick / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{WIDTH - 20}" y2="{y(value):.1f}" stroke="#e0e0e0"/>'
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" font-size="10" text-anchor="end" fill="#5f6368">'
            f"{round(value, 1):g}</text>"
        )
    for s in series:
        shown = list(zip(days, s.values, strict=False))
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(shown))
        parts.append(
            f'<g class="series" data-key="{escape(s.key)}"><title>{escape(s.label)}</title>'
            f'<polyline points="{path}" fill="none" stroke="{escape(s.colour)}" stroke-width="2"/>'
        )
        parts.extend(
            f'<circle class="band-point" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{escape(s.colour)}">'
            f"<title>{escape(f'{s.label}, {day}: {v:g}')}</title></circle>"
            for i, (day, v) in enumerate(shown)
        )
        parts.append("</g>")
    for i in sorted({0, len(days) - 1} if days else set()):
        # The last date ends at its point (centred, it would run past the chart's right edge).
        anchor = "end" if i and i == len(days) - 1 else "middle"
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - 10}" font-size="10" text-anchor="{anchor}" fill="#5f6368">'
            f"{escape(days[i])}</text>"
        )
    for i, s in enumerate(series):
        left, base = LEFT + 150 * (i % 4), HEIGHT + 6 + 20 * (i // 4)
        parts.append(
            f'<g class="legend"><rect x="{left}" y="{base}" width="12" height="12" fill="{escape(s.colour)}"/>'
            f'<text x="{left + 18}" y="{base + 10}" font-size="12">{escape(_short(s.label, 18))}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _describe(days: Sequence[str], series: Sequence[Series]) -> str:
    """The chart in words: the span, and each line from its first value to its last."""
    if not days or not series:
        return "no scored day in this span"
    lines = "; ".join(f"{s.label} from {s.values[0]:g} to {s.values[-1]:g}" for s in series if s.values)
    return f"{len(days)} scored days from {days[0]} to {days[-1]}: {lines}"


def _short(text: str, at: int = 26) -> str:
    """A label cut to fit the labels' column (the full text stays in the tooltip)."""
    return text if len(text) <= at else text[: at - 1] + "…"
