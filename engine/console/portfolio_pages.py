"""Portfolios in the console, for managers: per CSM, `touchflow portfolio`'s table — accounts,
ARR, health against the team and the component that drags it, at-risk accounts renewing within
90 days, tasks opened, closed and open. The numbers are `engine.portfolio.report`'s."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from engine.console.pages import PageContext
from engine.console.permissions import Page
from engine.portfolio.report import portfolios


def portfolio(ctx: PageContext) -> Response:
    """Every CSM's portfolio as of now."""
    with ctx.console.engine.connect() as conn:
        rows = portfolios(conn, ctx.console.clock(), None)
    shown: list[dict[str, Any]] = [
        {
            "csm": p.email,
            "name": p.name,
            "accounts": p.accounts,
            "arr": f"{p.arr:,.0f}",
            "health": "" if p.health is None else f"{p.health:g}",
            "vs_team": "" if p.vs_team is None else f"{p.vs_team:+g}",
            "at_risk": [f"{a.account_id} {a.name} ({a.score:g}, renews {a.renewal_date})" for a in p.at_risk_renewing],
            "open": p.tasks_open,
            "closed": p.tasks_closed,
            "oldest": "" if p.open_age_max_days is None else f"{p.open_age_max_days}d",
            "summary": p.summary,
        }
        for p in rows
    ]
    return ctx.render("portfolio.html", {"title": "Portfolios", "rows": shown, "day": ctx.console.clock().date()})


PAGES = [Page("/portfolio", portfolio, "reports", name="portfolio")]
