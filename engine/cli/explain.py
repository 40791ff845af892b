"""`touchflow run --dry-run --explain`: one dry tick, run in this process, and every decision it
made per recipient — playbook, step, decision, reason, detail — in 80 columns (or JSON)."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from datetime import datetime
from pathlib import Path

import typer
from sqlalchemy import Engine

from engine.cli.common import err, out
from engine.project import Project
from engine.tick.explain import Explained, explain_dry_run

WIDTH = 80


def explained_dry_run(
    store: Engine, project: Project, playbook: str | None, at: datetime, as_json: bool, outbox: Path
) -> None:
    """Run the dry tick, print the decisions and the summary; exit 1 when a playbook failed."""
    from engine.cli.run import _summary_table

    ids = [p.id for p in project.active(playbook)]
    summaries, decisions = explain_dry_run(store, project, ids, at, f"dry-run-{uuid.uuid4().hex[:12]}")
    rows = [s.as_dict() for s in summaries]
    if as_json:
        sys.stdout.write(json.dumps({"summary": rows, "explain": [d.as_dict() for d in decisions]}) + "\n")
    else:
        for line in lines(decisions):
            out.print(line, markup=False, width=WIDTH)
        _summary_table(rows, at, True, outbox)
    failed = [row for row in rows if row.get("error")]
    for row in failed:
        err.print(f"error: playbook '{row['playbook']}' failed ({row['error']})", markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def lines(decisions: list[Explained]) -> list[str]:
    """Per playbook and account, one line per decision — `step: decision (reason)`, and the
    contact's address when it is about one —, its detail on the next, wrapped at 80 columns."""
    if not decisions:
        return ["no decisions: nothing would happen at this tick"]
    grouped: dict[tuple[str, int | None], list[Explained]] = {}
    for d in decisions:
        grouped.setdefault((d.playbook, d.account_id), []).append(d)
    text: list[str] = []
    playbook = None
    for (pid, account_id), made in grouped.items():
        if pid != playbook:
            text.extend(["", pid] if text else [pid])
            playbook = pid
        name = made[0].account
        text.append(_fill(f"account {account_id}{f' ({name})' if name else ''}" if account_id else "-", "  "))
        for d in made:
            to = f" to {d.email or '(no address)'} (contact {d.contact_id})" if d.contact_id is not None else ""
            text.append(_fill(f"{d.step or '-'}: {d.decision} ({d.reason}){to}", "    "))
            if d.detail:
                text.append(_fill(d.detail, "        "))
    return text


def _fill(text: str, indent: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)
