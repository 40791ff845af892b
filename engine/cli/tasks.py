"""`touchflow tasks list|close`: the CSM tasks playbooks opened, and closing them with an outcome."""

from __future__ import annotations

import getpass
import os
import sys
from enum import StrEnum
from typing import Annotated

import typer
from sqlalchemy import Connection

from engine.cli.common import Format, NowOption, UsageLine, choice, err, open_store, out, parse_now, unknown
from engine.cli.layout import print_rows
from engine.output import Layout

tasks = typer.Typer(no_args_is_help=True, help="CSM tasks: list them, close them with an outcome.")


class Status(StrEnum):
    """A task's status."""

    open = "open"
    done = "done"


TASK_LAYOUT = Layout(
    columns=("id", "status", "csm", "account", "reason", "age", "title"),
    heading=("id", "status", "csm"),
    numeric=frozenset({"id", "account", "age"}),
    detail="title",
)

FormatOption = Annotated[
    Format,
    typer.Option("--format", help="How to print (json: one object per line).", parser=choice(Format, "--format")),
]
CsmOption = Annotated[str | None, typer.Option("--csm", help="Only this CSM's (their email, any case).")]


def csm_or_exit(conn: Connection, email: str) -> int:
    """The CSM's id, or exit 2 listing every CSM's address."""
    from engine.tasks_report import find_csm

    try:
        return find_csm(conn, email)
    except LookupError as exc:
        unknown("CSM", email, exc.args[0], listed_as="CSMs")


@tasks.command("list")
def list_(
    csm: CsmOption = None,
    status: Annotated[
        Status | None, typer.Option(help="Only open or only done tasks.", parser=choice(Status, "--status"))
    ] = None,
    fmt: FormatOption = Format.table,
    now: NowOption = None,
) -> None:
    """Tasks oldest first: CSM, account, the playbook and step that opened them, age while open."""
    from engine.config import load_settings
    from engine.output import as_csv, as_json_lines
    from engine.tasks_report import TASK_FIELDS, list_tasks

    moment = parse_now(now)
    engine = open_store(load_settings().database_url)
    with engine.connect() as conn:
        who = csm_or_exit(conn, csm) if csm is not None else None
        rows = list_tasks(conn, moment, who, status.value if status else None)
    engine.dispose()
    if fmt is not Format.table:
        sys.stdout.writelines(as_json_lines(rows) if fmt is Format.json else as_csv(rows, TASK_FIELDS))
        return
    shown = [
        {
            "id": str(r["id"]),
            "status": r["status"] if r["status"] != "done" else f"done:{r['outcome'] or ''}",
            "csm": r["csm"] or "",
            "account": str(r["account_id"]),
            "reason": f"{r['playbook']}/{r['step']}",
            "age": "" if r["age_days"] is None else f"{r['age_days']}d",
            "title": r["title"],
        }
        for r in rows
    ]
    print_rows(out, TASK_LAYOUT, shown, f"tasks: {len(shown)}")


@tasks.command("close")
def close(
    task_id: Annotated[
        int, typer.Argument(metavar="ID", min=1, max=2**63 - 1, help="The task's id (`touchflow tasks list`).")
    ],
    outcome: Annotated[str, typer.Option(help="Why it is closed: resolved, no_action, churned … (≤ 40 characters).")],
    who: Annotated[str | None, typer.Option("--as", help="Who closes it (default: $USER).")] = None,
    now: NowOption = None,
) -> None:
    """Close a task with its outcome: status done, when and by whom, audited."""
    from engine.config import load_settings
    from engine.tasks_report import OUTCOME, TaskError, close_task, visible

    if not OUTCOME.match(outcome):
        raise UsageLine(
            "--outcome must be 1-40 letters, digits, spaces or _.:/- starting with a letter or digit, "
            f"not '{visible(outcome)[:60]}'"
        )
    person = visible(who or os.environ.get("USER") or _login()).strip()[:200] or "unknown"
    moment = parse_now(now)
    engine = open_store(load_settings().database_url)
    try:
        with engine.begin() as conn:
            close_task(conn, task_id, outcome, person, moment)
    except LookupError:
        err.print(f"error: no task {task_id}; `touchflow tasks list` shows their ids", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except TaskError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    out.print(f"closed task {task_id}: {outcome} (by {person})", markup=False, soft_wrap=True)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
