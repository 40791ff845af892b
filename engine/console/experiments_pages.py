"""Experiments in the console: each experiment's arms with their rates and 95 % intervals as a
chart drawn on the server (SVG: no script, no CDN, works offline), the verdict in words, and the
`touchflow experiments promote` command to run — the console never edits playbooks, which live
in git. The numbers are `engine.experiments.report`'s, the words `present.py`'s.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup, escape
from starlette.responses import Response

from engine.console.pages import PageContext
from engine.console.permissions import Page
from engine.experiments.present import arm_label, arm_rows, ci_text, heading
from engine.experiments.report import METRICS, ExperimentResult, ReportError, experiment_report
from engine.experiments.stats import format_percent
from engine.project import Project

WIDTH, LABEL, ROW, TOP = 640, 180, 34, 24
"""The chart's geometry in pixels: total width, the arm labels' column, a row per arm, the axis."""


def interval_chart(result: ExperimentResult) -> Markup:
    """An SVG of every compared arm: a bar to its rate and a whisker over its 95 % interval, the
    control's rate as a dashed line; the scale runs from 0 to the highest interval, rounded up."""
    arms = result.report.arms
    top = max([a.ci_high for a in arms] + [0.05])
    scale = min(1.0, math.ceil(top * 10) / 10)
    plot = WIDTH - LABEL - 20
    height = TOP + ROW * len(arms) + 10

    def x(rate: float) -> float:
        return LABEL + plot * min(rate, scale) / scale

    parts = [
        f'<svg class="intervals" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(heading(result))}">'
    ]
    for tick in range(6):
        value = scale * tick / 5
        parts.append(
            f'<line x1="{x(value):.1f}" y1="{TOP - 6}" x2="{x(value):.1f}" y2="{height - 10}" stroke="#e0e0e0"/>'
            f'<text x="{x(value):.1f}" y="{TOP - 10}" font-size="10" text-anchor="middle" fill="#5f6368">'
            f"{escape(format_percent(value))}</text>"
        )
    control = next((a for a in arms if a.is_control), None)
    if control is not None:
        parts.append(
            f'<line class="control" x1="{x(control.rate):.1f}" y1="{TOP - 4}" x2="{x(control.rate):.1f}" '
            f'y2="{height - 10}" stroke="#1f3a5f" stroke-dasharray="3 3"/>'
        )
    for i, a in enumerate(arms):
        mid = TOP + ROW * i + ROW / 2
        colour = "#137333" if a.significant else ("#1f3a5f" if a.is_control else "#8ab4f8")
        label = arm_label(a.arm, a.is_control, a.holdout)
        tip = f"{label}: {format_percent(a.rate)} ({a.conversions}/{a.n}), 95% CI {ci_text(a.ci_low, a.ci_high)}"
        parts.append(
            f'<g class="arm" data-arm="{escape(a.arm)}"><title>{escape(tip)}</title>'
            f'<text x="{LABEL - 8}" y="{mid + 4:.1f}" font-size="12" text-anchor="end">{escape(label)}</text>'
            f'<rect class="rate" x="{LABEL}" y="{mid - 8:.1f}" width="{x(a.rate) - LABEL:.1f}" height="16" '
            f'fill="{colour}" opacity="0.55"/>'
            f'<line class="ci" x1="{x(a.ci_low):.1f}" y1="{mid:.1f}" x2="{x(a.ci_high):.1f}" y2="{mid:.1f}" '
            f'stroke="#202124" stroke-width="2"/>'
            f'<line x1="{x(a.ci_low):.1f}" y1="{mid - 6:.1f}" x2="{x(a.ci_low):.1f}" y2="{mid + 6:.1f}" '
            f'stroke="#202124"/>'
            f'<line x1="{x(a.ci_high):.1f}" y1="{mid - 6:.1f}" x2="{x(a.ci_high):.1f}" y2="{mid + 6:.1f}" '
            f'stroke="#202124"/></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def promote_command(result: ExperimentResult) -> str | None:
    """The command that gives the winning arm all the weight; None while no arm has won."""
    winner = result.report.winner
    if result.report.status != "winner" or winner is None:
        return None
    return f"touchflow experiments promote {result.playbook} {result.step} {winner}"


def experiments(ctx: PageContext) -> Response:
    """Every email experiment of the project, compared on its metric (or `?metric=`)."""
    view = ctx.console.project()
    metric = ctx.request.query_params.get("metric", "").strip() or None
    project = Project(ctx.console.settings, tuple(view.playbooks.values()), view.renderer)
    values: dict[str, Any] = {"title": "Experiments", "metric": metric, "metrics": METRICS, "results": []}
    try:
        with ctx.console.engine.connect() as conn:
            results = experiment_report(conn, project, metric=metric if metric != "all" else None)
    except ReportError as exc:
        return ctx.render("experiments.html", {**values, "error": str(exc)}, status=400)
    values["results"] = [
        {
            "heading": heading(r),
            "chart": interval_chart(r),
            "rows": arm_rows(r),
            "summary": r.summary,
            "status": r.report.status,
            "promote": promote_command(r),
            "result": r,
        }
        for r in results
    ]
    return ctx.render("experiments.html", values)


PAGES = [Page("/experiments", experiments, "reports", name="experiments")]
