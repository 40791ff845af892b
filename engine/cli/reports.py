"""`touchflow audit`: what the engine decided and why, as a table, CSV or JSON lines."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from sqlalchemy import Connection

from engine.audit import Decision
from engine.cli.common import Format, choice, err, open_store, out, unknown
from engine.cli.layout import print_rows
from engine.config import Settings, load_settings
from engine.output import Layout

AUDIT_LAYOUT = Layout(
    columns=("at", "playbook", "step", "account", "contact", "decision", "reason", "detail"),
    heading=("at", "playbook", "step", "decision", "reason"),
    detail="detail",
)
"""A decision per row; on a narrow terminal a block whose detail has a line of its own."""

SUMMARY_LAYOUT = Layout(
    columns=("playbook", "decision", "reason", "decisions", "contacts", "accounts"),
    heading=("playbook", "decision", "reason"),
    numeric=frozenset({"decisions", "contacts", "accounts"}),
)


def audit(
    playbook: Annotated[str | None, typer.Option(help="Only this playbook.")] = None,
    contact: Annotated[
        str | None, typer.Option(help="Only this contact: its id, its email (any case) or your external id.")
    ] = None,
    account: Annotated[int | None, typer.Option(min=1, max=2**63 - 1, help="Only this account id.")] = None,
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
    since: Annotated[
        str | None,
        typer.Option(
            help="From this date/time (ISO 8601), this long ago (7d, 24h, 2w), today, yesterday or last-week."
        ),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this moment (the same forms as --since).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many rows.")] = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", help="How to print (json: one object per line).", parser=choice(Format, "--format")),
    ] = Format.table,
    summary: Annotated[
        bool,
        typer.Option("--summary", help="Per playbook, decision and reason: decisions, contacts and accounts."),
    ] = False,
) -> None:
    """What the engine decided and why: sends, deferrals, caps, suppressions, tasks, failures."""
    from engine.audit_report import FIELDS, SUMMARY_FIELDS, AuditFilter, parse_moment, query_audit, summarize
    from engine.output import as_csv, as_json_lines

    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        window = [parse_moment(v, now) if v else None for v in (since, until)]
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    chosen = decision.value if decision is not None else None
    settings = load_settings()
    engine = open_store(settings.database_url)
    with engine.connect() as conn:
        if playbook is not None:
            _check_playbook(conn, settings, playbook)
        people = _contacts_or_exit(conn, contact) if contact is not None else None
        where = AuditFilter(playbook, people, account, reason, chosen, window[0], window[1], limit)
        if summary:
            counts = summarize(conn, where)
            if fmt is not Format.table:
                sys.stdout.writelines(as_json_lines(counts) if fmt is Format.json else as_csv(counts, SUMMARY_FIELDS))
                return
            shown = [{k: str(v) for k, v in row.items()} for row in counts]
            print_rows(out, SUMMARY_LAYOUT, shown, f"audit summary: {sum(r['decisions'] for r in counts)} decisions")
            return
        rows = query_audit(conn, where)
        if fmt is not Format.table:
            sys.stdout.writelines(as_json_lines(rows) if fmt is Format.json else as_csv(rows, FIELDS))
            return
        listed = [_cells(row) for row in rows]
    print_rows(out, AUDIT_LAYOUT, listed, f"audit: {len(listed)} decisions")


def _cells(row: dict[str, Any]) -> dict[str, str]:
    """An audit row as the text of the table's columns."""
    named = {**row, "account": row["account_id"], "contact": row["contact_id"]}
    return {col: "" if named[col] is None else str(named[col]) for col in AUDIT_LAYOUT.columns}


def _check_playbook(conn: Connection, settings: Settings, playbook: str) -> None:
    """Exit 2 listing the valid ids when `playbook` is neither in the project nor in the store."""
    from engine.audit_report import known_playbooks

    known = known_playbooks(conn) | _project_playbooks(settings)
    if playbook not in known:
        unknown("playbook", playbook, sorted(known), listed_as="playbooks in the project or the store")


def _project_playbooks(settings: Settings) -> set[str]:
    """The ids of the project's playbooks; none when the project does not load (the audit of a
    store does not need it: the store's own ids still count)."""
    from engine.delivery_config import SettingsError
    from engine.problems import ProblemsFound
    from engine.project import load_project

    try:
        return set(load_project(settings).by_id())
    except (ProblemsFound, SettingsError, OSError):
        return set()


def _contacts_or_exit(conn: Connection, value: str) -> tuple[int, ...]:
    """The contact ids `--contact` names, or exit 2 saying none does."""
    from engine.audit_report import find_contacts

    try:
        return find_contacts(conn, value)
    except LookupError as exc:
        err.print(f"error: {exc.args[0]}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
