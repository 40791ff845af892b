"""`touchflow audit`: what the engine decided and why, as a table, CSV or JSON lines."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from engine.audit import Decision
from engine.cli.common import Format, choice, err, open_store, out
from engine.config import load_settings


def audit(
    playbook: Annotated[str | None, typer.Option(help="Only this playbook.")] = None,
    contact: Annotated[int | None, typer.Option(help="Only this contact id.")] = None,
    account: Annotated[int | None, typer.Option(help="Only this account id.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason code, e.g. capped_contact_daily.")] = None,
    decision: Annotated[
        Decision | None,
        # Sixteen choices: listed in the help text, which wraps between words (a metavar would not).
        typer.Option(
            metavar="DECISION",
            help=f"Only this decision: {', '.join(Decision)}.",
            parser=choice(Decision, "--decision"),
        ),
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this date/time (ISO 8601) or this long ago (7d).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date/time, or this long ago.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many rows.")] = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", help="How to print (json: one object per line).", parser=choice(Format, "--format")),
    ] = Format.table,
    summary: Annotated[bool, typer.Option("--summary", help="Only the count of each decision and reason.")] = False,
) -> None:
    """What the engine decided and why: sends, deferrals, caps, suppressions, tasks, failures."""
    from engine.audit_report import FIELDS, AuditFilter, parse_moment, query_audit, reason_counts
    from engine.output import as_csv, as_json_lines

    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        window = [parse_moment(v, now) if v else None for v in (since, until)]
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    chosen = decision.value if decision is not None else None
    where = AuditFilter(playbook, contact, account, reason, chosen, window[0], window[1], limit)
    engine = open_store(load_settings().database_url)
    with engine.connect() as conn:
        rows = query_audit(conn, where)
        if fmt is not Format.table:
            fields: tuple[str, ...] = FIELDS
            if summary:  # the counts, in the asked format
                rows = iter([{"decision": d, "reason": r, "count": n} for d, r, n in reason_counts(list(rows))])
                fields = ("decision", "reason", "count")
            sys.stdout.writelines(as_json_lines(rows) if fmt is Format.json else as_csv(rows, fields))
            return
        shown = list(rows)
    if summary:
        for dec, why, n in reason_counts(shown):
            out.print(f"{n:>7}  {dec:<14} {why}", markup=False)
        return
    table = Table(title=f"audit: {len(shown)} decisions")
    columns = ("at", "playbook", "step", "account_id", "contact_id", "decision", "reason", "detail")
    for col in columns:
        table.add_column(col.removesuffix("_id"), overflow="fold")
    for row in shown:
        table.add_row(*(str(row[c]) if row[c] is not None else "" for c in columns))
    out.print(table)
