"""`touchflow approvals list|approve` (content approved before it goes out, with `approvals:
required`), `touchflow archive show|prune` (each message as it was sent) and `touchflow timeline
CONTACT` (why this person got this email). The console's pages call the same engine functions."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from engine.cli.common import NowOption, choice, err, open_store, out, parse_now, project_or_exit
from engine.cli.layout import print_rows
from engine.config import load_settings
from engine.output import Layout, as_json_lines


class ListFormat(StrEnum):
    """A table for people, JSON lines for programs."""

    table = "table"
    json = "json"


FormatOption = Annotated[
    ListFormat,
    typer.Option("--format", help="table or json (one object per line).", parser=choice(ListFormat, "--format")),
]

APPROVALS_LAYOUT = Layout(
    columns=("playbook", "step", "arm", "locale", "approved", "by", "at", "current", "approved hash"),
    heading=("playbook", "step", "arm", "locale"),
)
TIMELINE_LAYOUT = Layout(
    columns=("at", "kind", "what", "playbook", "step", "reason", "detail", "message"),
    heading=("at", "what", "playbook", "step"),
    detail="detail",
)

approvals = typer.Typer(no_args_is_help=True, help="Email content approved before it goes out (approvals: required).")
archive = typer.Typer(no_args_is_help=True, help="Each message exactly as it was sent, kept for the retention.")


@approvals.command("list")
def list_command(fmt: FormatOption = ListFormat.table) -> None:
    """Every email step × arm × locale: approved or not, by whom, when, current vs approved hash."""
    from engine.approvals import list_approvals

    settings = load_settings()
    project = project_or_exit(settings)
    store = open_store(settings.database_url)
    with store.connect() as conn:
        found = [s.as_dict() for s in list_approvals(conn, project.playbooks, project.renderer)]
    if fmt is ListFormat.json:
        sys.stdout.writelines(as_json_lines(found))
        return
    required = project.delivery.approvals == "required"
    title = f"approvals ({'required' if required else 'off: content goes out unapproved'}): {len(found)} contents"
    print_rows(out, APPROVALS_LAYOUT, [_approval_cells(r) for r in found], title)


def _approval_cells(row: dict[str, Any]) -> dict[str, str]:
    return {
        "playbook": row["playbook"],
        "step": row["step"],
        "arm": row["arm"] or "-",
        "locale": row["locale"],
        "approved": "yes" if row["approved"] else ("changed" if row["approved_hash"] else "no"),
        "by": row["approved_by"] or "",
        "at": row["approved_at"] or "",
        "current": row["current_hash"][:12],
        "approved hash": (row["approved_hash"] or "")[:12],
    }


@approvals.command("approve")
def approve_command(
    playbook: Annotated[str, typer.Argument(help="The playbook's id.")],
    step: Annotated[str, typer.Argument(help="The email step's id.")],
    arm: Annotated[str | None, typer.Argument(help="One arm of the step's experiment (default: every arm).")] = None,
    by: Annotated[str, typer.Option("--as", help="Who approves: an email address, recorded.")] = "",
    comment: Annotated[str, typer.Option(help="Why, or what was checked; recorded.")] = "",
    now: NowOption = None,
) -> None:
    """Approve a step's content exactly as it is now, every locale; an edit later revokes it."""
    from engine.approvals import approve

    if not by:
        err.print("error: say who approves with --as EMAIL", markup=False)
        raise typer.Exit(2)
    settings = load_settings()
    project = project_or_exit(settings)
    store = open_store(settings.database_url)
    moment = parse_now(now)
    with store.begin() as conn:
        try:
            done = approve(
                conn, project.by_id(), project.renderer, playbook, step, arm, by=by, comment=comment, now=moment
            )
        except (LookupError, ValueError) as exc:
            err.print(f"error: {exc.args[0]}", markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
    for c in done:
        where = f"{c.playbook_id} {c.step_id}" + (f" arm {c.arm}" if c.arm else "")
        out.print(f"approved {where} ({c.locale or 'default'}): {c.template} {c.content_hash[:12]}", markup=False)
    if not done:
        out.print("nothing to approve: the step has no template file", markup=False)


@archive.command("show")
def show_command(
    send_key: Annotated[str, typer.Argument(help="The message's send key (from `touchflow audit`).")],
    raw: Annotated[
        bool, typer.Option("--raw", help="The message as an .eml file (headers and parts as sent).")
    ] = False,
) -> None:
    """A message exactly as it was sent — never re-rendered from today's templates."""
    from engine.archive import message_as_sent

    settings = load_settings()
    store = open_store(settings.database_url)
    with store.connect() as conn:
        found = message_as_sent(conn, send_key)
    if found is None:
        err.print(f"error: no archived message '{send_key}' (never sent, or past the retention)", markup=False)
        raise typer.Exit(1)
    if raw:
        sys.stdout.buffer.write(found.eml())
        return
    for name in ("From", "To", "Subject", "Date"):
        out.print(f"{name}: {found.header(name) or ''}", markup=False, soft_wrap=True)
    out.print(f"content hash: {found.content_hash}; archived {found.archived_at.isoformat()}", markup=False)
    out.print("", markup=False)
    out.print(found.text, markup=False, soft_wrap=True)


@archive.command("prune")
def prune_command(now: NowOption = None) -> None:
    """Drop archived messages older than `archive.retention` (default 90 days) of touchflow.yaml."""
    from engine.archive import prune_archive
    from engine.spec.base import format_duration

    settings = load_settings()
    project = project_or_exit(settings)
    store = open_store(settings.database_url)
    retention = project.delivery.archive.retention
    with store.begin() as conn:
        dropped = prune_archive(conn, parse_now(now), retention)
    out.print(f"pruned {dropped} archived message(s) older than {format_duration(retention)}", markup=False)


def timeline(
    contact: Annotated[str, typer.Argument(help="The contact: its id, its email (any case) or your external id.")],
    fmt: FormatOption = ListFormat.table,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the latest this many entries.")] = None,
) -> None:
    """Why this person got this email: entries, decisions and reasons, sends, what they did."""
    from engine.timeline import contact_timeline

    settings = load_settings()
    store = open_store(settings.database_url)
    with store.connect() as conn:
        try:
            found = contact_timeline(conn, contact, limit=limit)
        except LookupError as exc:
            err.print(f"error: {exc.args[0]}", markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
    entries = [e.as_dict() for e in found.entries]
    if fmt is ListFormat.json:
        sys.stdout.writelines(as_json_lines(entries))
        return
    shown = [c for c in TIMELINE_LAYOUT.columns if c != "message"]
    cells = [
        {**{k: "" if row[k] is None else str(row[k]) for k in shown}, "message": _archive_link(e.send_key, e.archived)}
        for row, e in zip(entries, found.entries, strict=True)
    ]
    people = ", ".join(str(c) for c in found.contacts)
    print_rows(out, TIMELINE_LAYOUT, cells, f"timeline of contact {people}: {len(cells)} entries")


def _archive_link(send_key: str | None, archived: bool) -> str:
    return f"touchflow archive show {send_key}" if archived and send_key else ""


def register(app: typer.Typer) -> None:
    """Add these commands to the `touchflow` application."""
    app.add_typer(approvals, name="approvals")
    app.add_typer(archive, name="archive")
    app.command()(timeline)
