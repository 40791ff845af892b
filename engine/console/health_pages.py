"""Health in the console, for managers: today's scores counted by band, the team's mean score per
day (and each band's count per day) over the last days, the lowest-scored accounts, and one
account's score explained component by component — the lines `touchflow health --account ID`
prints, from the same `engine.health.compute` functions. Read-only: scores are computed by the
tick (or `touchflow health compute`), never by a page.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import Connection, select
from starlette.responses import Response

from engine.console.charts import UNKNOWN, Bar, Series, band_colours, band_trend_chart, bar_chart, line_chart
from engine.console.pages import PageContext
from engine.console.params import BIGINT_MAX, whole_number
from engine.console.permissions import Page
from engine.health.compute import Score, daily_trend, explain, latest_day, scores_on
from engine.health.load import HEALTH_FILE, load_health
from engine.health.spec import HealthSpec
from engine.problems import ProblemsFound
from engine.store.models import accounts

DAYS, MAX_DAYS, LOWEST = 30, 365, 20
"""The trend's default and largest span in days, and how many of the lowest scores are listed."""


def names_of(conn: Connection, ids: list[int]) -> dict[int, str]:
    """Account id → name, for the accounts listed on the page."""
    if not ids:
        return {}
    rows = conn.execute(select(accounts.c.id, accounts.c.name).where(accounts.c.id.in_(ids)))
    return {int(i): str(n) for i, n in rows}


def band_order(spec: HealthSpec, seen: set[str]) -> list[tuple[str, str]]:
    """(name, label) of every band, highest first; bands found in the history but no longer in
    the model (renamed since) come last under their stored name."""
    known = [(b.name, b.label or b.name) for b in spec.bands]
    names = {n for n, _ in known}
    return known + [(b, b) for b in sorted(seen - names)]


def health(ctx: PageContext) -> Response:
    """The health overview, or one account's score explained (`?account=ID`); `?days=` sets the trend."""
    values: dict[str, Any] = {"title": "Health", "message": None, "error": None}
    days = _int(ctx.request.query_params.get("days"), DAYS, 1, MAX_DAYS)
    account = _int(ctx.request.query_params.get("account"), 0, 1, BIGINT_MAX)
    raw_days, raw_account = ctx.request.query_params.get("days"), ctx.request.query_params.get("account")
    if days is None or account is None:
        which = f"days={raw_days!r} (1–{MAX_DAYS})" if days is None else f"account={raw_account!r} (an account id)"
        return ctx.render("health.html", {**values, "error": f"not a valid value: {which}"}, status=400)
    values["days"] = days
    try:
        spec = load_health(ctx.console.settings.project_dir)
    except ProblemsFound as exc:
        return ctx.render("health.html", {**values, "error": f"{HEALTH_FILE} cannot be read:\n{exc}"})
    if spec is None:
        message = f"No health model: write {HEALTH_FILE} beside touchflow.yaml (docs/health.md)."
        return ctx.render("health.html", {**values, "message": message})
    with ctx.console.engine.connect() as conn:
        day = latest_day(conn, ctx.console.clock())
        if day is None:
            message = "No health scores yet: a tick computes them once a day (`touchflow health compute`)."
            return ctx.render("health.html", {**values, "message": message})
        values["day"] = day
        if account:
            return _account(ctx, conn, spec, day, account, values)
        scores = scores_on(conn, day)
        history = daily_trend(conn, day, days)
        lowest = scores[:LOWEST]
        names = names_of(conn, [s.account_id for s in lowest])
    counts: dict[str, int] = defaultdict(int)
    for s in scores:
        counts[s.band] += 1
    order = band_order(spec, set(counts) | {b for d in history for b in d.bands})
    colours = dict(zip([b.name for b in spec.bands], band_colours(len(spec.bands)), strict=True))
    values.update(
        scored=len(scores),
        bands=[(label, counts.get(name, 0)) for name, label in order],
        band_chart=bar_chart(
            [
                Bar(label, counts.get(name, 0), str(counts.get(name, 0)), key=name, colour=colours.get(name, UNKNOWN))
                for name, label in order
            ],
            f"accounts per band on {day.isoformat()}",
            css="bands",
        ),
        trend_chart=line_chart([(d.day.isoformat(), d.mean) for d in history], f"mean score, last {days} days"),
        band_trend_chart=band_trend_chart(
            [d.day.isoformat() for d in history],
            # A line per band some day of the span had: a band nobody was in adds only a flat zero.
            [
                Series(name, label, [float(d.bands.get(name, 0)) for d in history], colours.get(name, UNKNOWN))
                for name, label in order
                if any(d.bands.get(name) for d in history)
            ],
            f"accounts per band per day, last {days} days",
            "band-trend",
        ),
        trend=[
            {"day": d.day.isoformat(), "mean": f"{d.mean:.1f}", "bands": [d.bands.get(n, 0) for n, _ in order]}
            for d in history
        ],
        band_names=[label for _, label in order],
        lowest=[_row(s, names) for s in lowest],
    )
    return ctx.render("health.html", values)


def _account(
    ctx: PageContext, conn: Connection, spec: HealthSpec, day: date, account: int, values: dict[str, Any]
) -> Response:
    """One account's score: each component's value, points and why, and the CLI's explanation."""
    found = scores_on(conn, day, account_id=account)
    names = names_of(conn, [account])
    if not found:
        error = f"account {account} has no score on {day.isoformat()}"
        return ctx.render("health.html", {**values, "error": error}, status=404)
    score = found[0]
    components = []
    for name, part in score.components.items():
        component = spec.components.get(name)
        detail = part if isinstance(part, dict) else {}
        components.append(
            {
                "name": component.label if component and component.label else name,
                "value": _num(detail.get("value")),
                "points": _num(detail.get("points")),
                "why": str(detail.get("why") or ""),
            }
        )
    values.update(
        account=_row(score, names),
        components=components,
        explanation=explain(score, spec),
        title=f"Health · account {account}",
    )
    return ctx.render("health.html", values)


def _row(score: Score, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": score.account_id,
        "name": names.get(score.account_id, ""),
        "score": f"{score.score:.1f}",
        "band": score.band,
    }


def _num(value: Any) -> str:
    """A component's number as the CLI shows it; anything else (hostile JSON) as a dash."""
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else "–"


def _int(raw: str | None, default: int, low: int, high: int) -> int | None:
    """A query parameter as an int in [low, high]; `default` when absent; None when invalid."""
    if raw is None or raw.strip() == "":
        return default
    return whole_number(raw, low, high)


PAGES = [Page("/health", health, "reports", name="health")]
