"""Commands that change the store: migrate, and run (one tick through the Prefect flow)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from engine.cli.common import NowOption, err, open_store, out, parse_now, project_or_exit, shown_url, unknown
from engine.cli.layout import print_rows
from engine.config import MAX_DISPATCHERS, load_settings
from engine.output import Layout


def migrate() -> None:
    """Create or upgrade the store's tables (Alembic)."""
    settings = load_settings()
    open_store(settings.database_url, create=True)
    out.print(f"store is at the latest revision: {shown_url(settings.database_url)}", markup=False)


def _prefect_environment(project_dir: Path) -> None:
    # Ephemeral mode, offline, with start-up time a 2-core machine needs; set before prefect loads.
    os.environ.setdefault("PREFECT_HOME", str(project_dir / ".prefect"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _start_prefect_api() -> None:
    """Without a configured Prefect API, start one as a child that dies with this process
    (Prefect's own ephemeral server outlives a `kill -9`); exit 1 with a message if it cannot."""
    from flows.prefect_server import ServerStartError, prefect_api_configured, start_api_server

    if prefect_api_configured():
        return
    try:
        start_api_server()
    except (ServerStartError, OSError) as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


def run(
    now: NowOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what the tick would do; write nothing.")] = False,
    playbook: Annotated[str | None, typer.Option(help="Run only this playbook.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Run even when --now is before the store's last tick.")
    ] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="With --dry-run: every decision per recipient, with its reason.")
    ] = False,
    dispatchers: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_DISPATCHERS,
            help="Dispatch in this many processes, claiming with SKIP LOCKED (PostgreSQL; 1: this one).",
        ),
    ] = 1,
) -> None:
    """Run one tick through the Prefect flow (ephemeral mode: nothing to start by hand).

    Exits 1 when a playbook failed (the others still ran; stderr says which and why) or a
    dispatcher process died, and refuses a live tick earlier than the store's last one unless
    --force. --dispatchers N > 1 needs PostgreSQL (SQLite has one writer) and a live tick."""
    if explain and not dry_run:
        err.print("error: --explain needs --dry-run (a live tick's reasons: touchflow audit)", markup=False)
        raise typer.Exit(2)
    if dispatchers > 1 and dry_run:
        err.print("error: --dispatchers applies to a live tick; a dry run sends nothing", markup=False)
        raise typer.Exit(2)
    settings = load_settings()
    _prefect_environment(settings.project_dir)

    at = parse_now(now)
    project = project_or_exit(settings)  # fail fast, with file:line:col, before Prefect starts
    if playbook is not None and playbook not in project.by_id():
        unknown("playbook", playbook, project.by_id())
    store = open_store(settings.database_url)  # an old store gets its upgrades; a missing one is an error
    from engine.tick.dispatchers import scales_out

    if dispatchers > 1 and not scales_out(store):
        # Asked for on the command line, so said at once rather than quietly run in one process
        # (the flow's parameter falls back with a warning: a schedule must keep ticking).
        err.print(
            f"error: --dispatchers {dispatchers} needs a PostgreSQL store: SQLite has one writer,"
            " so dispatcher processes would only take turns; leave --dispatchers out",
            markup=False,
            soft_wrap=True,
        )
        store.dispose()
        raise typer.Exit(2)
    if explain:  # the same stages in this process: the audit rows are read before the rollback
        from engine.cli.explain import explained_dry_run

        try:
            return explained_dry_run(store, project, playbook, at, as_json, settings.outbox_dir)
        finally:
            store.dispose()
    if not (dry_run or force):
        _refuse_going_back(store, at)  # before Prefect starts; the flow checks again, atomically
    store.dispose()
    _start_prefect_api()
    from engine.tick import TimeWentBackwards
    from flows.tick import tick

    try:
        rows = tick(now=at, dry_run=dry_run, playbook=playbook, force=force, dispatchers=dispatchers)
    except TimeWentBackwards as exc:  # another tick moved the store's clock since the check above
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        if os.environ.get("TOUCHFLOW_DEBUG"):
            raise
        err.print(f"the tick failed: {type(exc).__name__}: {exc}", markup=False)
        err.print("(set TOUCHFLOW_DEBUG=1 to see the traceback)", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        _summary_table(rows, at, dry_run, settings.outbox_dir)
    failed = [row for row in rows if row.get("error")]
    for row in failed:
        err.print(f"error: playbook '{row['playbook']}' failed ({row['error']})", markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _refuse_going_back(store: Engine, at: datetime) -> None:
    """Exit 1, saying why, when `at` is before the store's last live tick."""
    from engine.tick import TimeWentBackwards, last_tick

    last = last_tick(store)
    if last is not None and at < last:
        err.print(f"error: {TimeWentBackwards(last, at)}", markup=False, soft_wrap=True)
        store.dispose()
        raise typer.Exit(1)


SUMMARY_LAYOUT = Layout(
    columns=(
        "playbook",
        "matched",
        "enrolled",
        "emails",
        "tasks",
        "deferred",
        "skipped",
        "failed",
        "converted",
        "exited",
    ),
    heading=("playbook",),
    numeric=frozenset({"matched", "enrolled", "emails", "tasks", "deferred", "skipped", "failed"})
    | frozenset({"converted", "exited"}),
)
"""The tick's summary: one row (or block, on a narrow terminal) per playbook."""


def _summary_table(rows: Sequence[Mapping[str, object]], at: datetime, dry_run: bool, outbox: Path) -> None:
    title = f"{'Dry run' if dry_run else 'Tick'} at {at.isoformat(sep=' ')} UTC"
    shown = [
        {
            **{c: str(row[c]) for c in SUMMARY_LAYOUT.columns[1:]},
            "playbook": f"{row['playbook']} (failed)" if row.get("error") else str(row["playbook"]),
        }
        for row in rows
    ]
    print_rows(out, SUMMARY_LAYOUT, shown, title)  # a table when it fits, else a block per playbook
    for row in rows:  # a guardrail that stopped a playbook is said in words, not only in a column
        if row.get("paused"):
            out.print(f"paused: {row['playbook']} ({row['paused']}): {row.get('why_paused')}", markup=False)
    if dry_run:
        out.print("dry run: nothing was written", markup=False)
    else:
        out.print(f"outbox: {outbox}", markup=False)
