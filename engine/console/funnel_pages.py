"""The weekly lifecycle funnel in the console, for managers: `touchflow funnel`'s report (per
weekly cohort by contract start, each stage's count and conversion, the bottleneck) as a chart
of every stage over the weeks shown, the bottleneck in red, and the table week by week with each
week's bottleneck highlighted. The numbers are `engine.funnel.report`'s, unchanged.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from engine.console.charts import Bar, bar_chart
from engine.console.pages import PageContext
from engine.console.params import whole_number
from engine.console.permissions import Page
from engine.funnel.load import HEALTH_FILE, load_funnel
from engine.funnel.report import By, StageCount, StageTotal, bottleneck_totals, funnel_report, stage_totals
from engine.problems import ProblemsFound

WEEKS, MAX_WEEKS = 12, 104
"""Weekly cohorts shown by default, and at most."""
SPLITS: dict[str, By] = {"tier": "tier", "segment": "segment"}


def funnel(ctx: PageContext) -> Response:
    """The funnel over `?weeks=` cohorts (12), optionally split `?by=tier` or `?by=segment`."""
    params = ctx.request.query_params
    values: dict[str, Any] = {"title": "Funnel", "message": None, "error": None, "weeks": WEEKS, "by": ""}
    raw_weeks, raw_by = params.get("weeks", "").strip(), params.get("by", "").strip()
    asked = whole_number(raw_weeks, 1, MAX_WEEKS)
    if raw_weeks and asked is None:
        return ctx.render("funnel.html", {**values, "error": f"weeks={raw_weeks!r}: give 1–{MAX_WEEKS}"}, status=400)
    if raw_by and raw_by not in SPLITS:
        return ctx.render("funnel.html", {**values, "error": f"by={raw_by!r}: give tier or segment"}, status=400)
    weeks = asked or WEEKS
    by = SPLITS.get(raw_by)
    values.update(weeks=weeks, by=raw_by)
    view = ctx.console.project()
    if view.delivery is None:
        return ctx.render("funnel.html", {**values, "error": f"touchflow.yaml cannot be read: {view.settings_error}"})
    path = ctx.console.settings.project_dir / HEALTH_FILE
    try:
        declared = load_funnel(path, HEALTH_FILE, view.delivery.traits)
    except ProblemsFound as exc:
        return ctx.render("funnel.html", {**values, "error": f"{HEALTH_FILE} cannot be read:\n{exc}"})
    if declared is None:
        message = f"No funnel: {HEALTH_FILE} declares no `funnel:` stages (docs/health.md, ## Funnel)."
        return ctx.render("funnel.html", {**values, "message": message})
    stages = [s.id for s in declared.stages]
    names = {s.id: s.name or s.id for s in declared.stages}
    with ctx.console.engine.connect() as conn:
        rows = funnel_report(conn, declared, ctx.console.clock(), weeks, by, view.delivery.traits)
    worst = bottleneck_totals(rows, stages)
    values.update(
        stages=[{"id": s, "name": names[s], "bottleneck": bool(worst and worst[0] == s)} for s in stages],
        chart=bar_chart(
            _bars(stage_totals(rows, stages), names, worst), f"accounts per stage over {weeks} weeks", css="funnel"
        ),
        table=_table(rows, stages),
        bottleneck=None if worst is None else {"stage": names[worst[0]], "id": worst[0], "rate": _pct(worst[1])},
    )
    return ctx.render("funnel.html", values)


def _bars(totals: list[StageTotal], names: dict[str, str], worst: tuple[str, float] | None) -> list[Bar]:
    """A bar per stage: the accounts that reached it over every week shown, with its conversion
    from the stage before (`stage_totals`: the same numbers the bottleneck is picked from)."""
    return [
        Bar(
            names[t.stage],
            t.reached,
            f"{t.reached} ({_pct(t.conversion)})",
            key=t.stage,
            highlight=bool(worst and worst[0] == t.stage),
        )
        for t in totals
    ]


def _table(rows: list[StageCount], stages: list[str]) -> list[dict[str, Any]]:
    """One line per week (and group): each stage's count and conversion, its bottleneck marked."""
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row.week.isoformat(), row.group or "")
        line = lines.setdefault(key, {"week": key[0], "group": key[1], "cells": dict.fromkeys(stages)})
        line["cells"][row.stage] = {
            "count": row.count,
            "conversion": _pct(row.conversion),
            "bottleneck": row.bottleneck,
        }
    return [{**line, "cells": [line["cells"][s] for s in stages]} for line in lines.values()]


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0%}"


PAGES = [Page("/funnel", funnel, "reports", name="funnel")]
