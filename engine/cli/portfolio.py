"""`touchflow portfolio`: per CSM, accounts and ARR, health against the team and its drag,
at-risk renewals, tasks opened and closed by reason, open task age."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import typer

from engine.cli.common import Format, NowOption, choice, open_store, out, parse_now
from engine.cli.layout import print_rows
from engine.cli.tasks import csm_or_exit
from engine.output import Layout

PORTFOLIO_LAYOUT = Layout(
    columns=("csm", "accounts", "arr", "health", "vs team", "at risk", "open", "closed", "oldest", "summary"),
    heading=("csm",),
    numeric=frozenset({"accounts", "arr", "health", "vs team", "at risk", "open", "closed", "oldest"}),
    detail="summary",
)
AT_RISK_LAYOUT = Layout(
    columns=("account", "name", "renews", "arr", "score", "band"),
    heading=("account", "name"),
    numeric=frozenset({"account", "arr", "score"}),
)
REASON_LAYOUT = Layout(
    columns=("reason", "opened", "closed"), heading=("reason",), numeric=frozenset({"opened", "closed"})
)


def portfolio(
    csm: Annotated[str | None, typer.Option("--csm", help="Only this CSM (their email, any case), in detail.")] = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", help="How to print (json: one object per CSM).", parser=choice(Format, "--format")),
    ] = Format.table,
    now: NowOption = None,
) -> None:
    """Per CSM: accounts, ARR, health against the team and the component that drags it, at-risk
    accounts renewing in 90 days, tasks opened and closed, and how old the open ones are."""
    from engine.config import load_settings
    from engine.output import as_csv, as_json_lines
    from engine.portfolio.report import FLAT_FIELDS, portfolios
    from engine.tasks_report import visible

    moment = parse_now(now)
    engine = open_store(load_settings().database_url)
    with engine.connect() as conn:
        chosen = csm_or_exit(conn, csm) if csm is not None else None
        rows = portfolios(conn, moment, chosen)
    engine.dispose()
    if fmt is Format.json:
        sys.stdout.writelines(as_json_lines(p.as_dict() for p in rows))
        return
    if fmt is Format.csv:
        sys.stdout.writelines(as_csv((p.as_flat() for p in rows), FLAT_FIELDS))
        return
    shown = [
        {
            "csm": p.email,
            "accounts": str(p.accounts),
            "arr": f"{p.arr:,.0f}",
            "health": "" if p.health is None else f"{p.health:g}",
            "vs team": "" if p.vs_team is None else f"{p.vs_team:+g}",
            "at risk": str(len(p.at_risk_renewing)),
            "open": str(p.tasks_open),
            "closed": str(p.tasks_closed),
            "oldest": "" if p.open_age_max_days is None else f"{p.open_age_max_days}d",
            "summary": p.summary,
        }
        for p in rows
    ]
    print_rows(out, PORTFOLIO_LAYOUT, shown, f"portfolios as of {_day(moment)}")
    if chosen is None:
        return
    (one,) = rows
    risky = [
        {
            "account": str(a.account_id),
            "name": visible(a.name),
            "renews": a.renewal_date,
            "arr": f"{a.arr:,.0f}",
            "score": f"{a.score:g}",
            "band": visible(a.band),
        }
        for a in one.at_risk_renewing
    ]
    print_rows(out, AT_RISK_LAYOUT, risky, f"at risk, renewing within 90 days: {len(risky)}")
    reasons = [{"reason": r.reason, "opened": str(r.opened), "closed": str(r.closed)} for r in one.by_reason]
    print_rows(out, REASON_LAYOUT, reasons, "tasks by reason (playbook/step)")


def _day(moment: datetime) -> str:
    return moment.date().isoformat()
