"""Charts drawn on the server as SVG for the console's report pages: no script, no CDN, works
offline under the console's `script-src 'none'`. Every label and tooltip passes through
`escape`, because names come from customer data."""

from __future__ import annotations

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
        colour = "#c5221f" if b.highlight else "#1f3a5f"
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


def _short(text: str, at: int = 26) -> str:
    """A label cut to fit the labels' column (the full text stays in the tooltip)."""
    return text if len(text) <= at else text[: at - 1] + "…"
