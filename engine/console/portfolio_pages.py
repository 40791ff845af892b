"""Portfolios in the console, for managers: per CSM, `touchflow portfolio`'s table — accounts,
ARR, health against the team and the component that drags it, at-risk accounts renewing within
90 days, tasks opened, closed and open —, and one CSM's drill-down (`?csm=ID`, as the health page
takes `?account=ID`): every account of their book with its renewal, ARR, score and band, the
at-risk ones marked, and tasks by reason, as `touchflow portfolio --csm` prints them. The numbers
are `engine.portfolio.report`'s, from the same `portfolios` call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from starlette.responses import Response

from engine.console.pages import PageContext
from engine.console.params import whole_number
from engine.console.permissions import Page
from engine.portfolio.report import Portfolio, portfolios
from engine.store.models import csms


def portfolio(ctx: PageContext) -> Response:
    """Every CSM's portfolio as of now, or one CSM's accounts (`?csm=ID`)."""
    now = ctx.console.clock()
    raw = ctx.request.query_params.get("csm", "").strip()
    if raw:
        return _drill_down(ctx, raw, now)
    with ctx.console.engine.connect() as conn:
        rows = portfolios(conn, now, None)
    shown = [_summary(p) for p in rows]
    return ctx.render("portfolio.html", {"title": "Portfolios", "rows": shown, "day": now.date()})


def _drill_down(ctx: PageContext, raw: str, now: datetime) -> Response:
    """One CSM's book; 400 for a value that is not an id, 404 for an id no CSM has — both pages
    list every CSM's id to pick from."""
    csm_id = whole_number(raw)
    with ctx.console.engine.connect() as conn:
        found = portfolios(conn, now, csm_id) if csm_id is not None else []
        known = [] if found else _every_csm(conn)
    values: dict[str, Any] = {"title": "Portfolios", "day": now.date()}
    if csm_id is None:
        error = f"csm={raw!r} is not a CSM id (a whole number); pick one below."
        return ctx.render("portfolio.html", {**values, "error": error, "known": known}, status=400)
    if not found:
        error = f"There is no CSM with id {csm_id}; pick one below."
        return ctx.render("portfolio.html", {**values, "error": error, "known": known}, status=404)
    (one,) = found
    at_risk = {a.account_id for a in one.at_risk_renewing}
    book = [
        {
            "id": h.account_id,
            "name": h.name,
            "renews": h.renewal_date or "",
            "arr": f"{h.arr:,.0f}",
            "score": "" if h.score is None else f"{h.score:g}",
            "band": h.band or "",
            "at_risk": h.account_id in at_risk,
        }
        for h in one.book
    ]
    reasons = [{"reason": r.reason, "opened": r.opened, "closed": r.closed} for r in one.by_reason]
    values.update(title=f"Portfolio · {one.email}", csm=_summary(one), book=book, reasons=reasons)
    return ctx.render("portfolio.html", values)


def _summary(p: Portfolio) -> dict[str, Any]:
    """A CSM's row of the portfolio table, formatted as `touchflow portfolio` prints it."""
    return {
        "id": p.csm_id,
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


def _every_csm(conn: Connection) -> list[dict[str, Any]]:
    """Every CSM's id, address and name, in the portfolio table's order (by address)."""
    rows = conn.execute(select(csms.c.id, csms.c.email, csms.c.name).order_by(csms.c.email, csms.c.id))
    return [{"id": int(i), "csm": str(e), "name": str(n)} for i, e, n in rows]


PAGES = [Page("/portfolio", portfolio, "reports", name="portfolio")]
