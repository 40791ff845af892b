"""What a tick leaves for a person in the Prefect UI: log lines per stage and a markdown summary.

The counts come from the stages' own results; the reasons (why messages were deferred, skipped or
failed) from the audit rows the tick wrote, grouped — so the summary reads like `touchflow audit
--summary` for one run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from engine.store.models import audit_log

COLUMNS = ("playbook", "matched", "enrolled", "emails", "tasks", "deferred", "skipped", "failed", "error")
_QUIET = {"enrolled", "sent", "task_opened", "waiting", "completed"}  # the expected decisions


def describe_result(stage: str, result: Any, seconds: float) -> str:
    """One log line for a finished stage: its counts and how long it took."""
    took = f"{seconds * 1000:.0f} ms"
    if result is None:
        return f"{stage}: nothing to do ({took})"
    if hasattr(result, "as_dict"):
        counts = result.as_dict()
        if isinstance(counts, dict):
            shown = {k: v for k, v in counts.items() if v not in (None, 0, {}, "")}
            return f"{stage}: {_flat(shown)} ({took})"
    return f"{stage}: {result} ({took})"


def _flat(counts: dict[str, Any]) -> str:
    parts = []
    for key, value in counts.items():
        if isinstance(value, dict):
            parts.append(f"{key} " + ", ".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            parts.append(f"{key}={value}")
    return "; ".join(parts) or "no changes"


def reasons(engine: Engine, at: datetime, run_id: str) -> list[tuple[str, str, str, int]]:
    """(playbook, decision, reason, count) of this run's audit rows that are not the expected
    outcome — deferrals, skips, failures —, most frequent first."""
    query = (
        select(audit_log.c.playbook_id, audit_log.c.decision, audit_log.c.reason, func.count())
        .where(audit_log.c.at == at, audit_log.c.run_id == run_id, audit_log.c.decision.not_in(_QUIET))
        .group_by(audit_log.c.playbook_id, audit_log.c.decision, audit_log.c.reason)
    )
    with engine.connect() as conn:
        rows = [(str(p), str(d), str(r), int(n)) for p, d, r, n in conn.execute(query)]
    return sorted(rows, key=lambda row: (-row[3], row[0], row[2]))


def markdown(at: datetime, run_id: str, rows: list[dict[str, Any]], why: list[tuple[str, str, str, int]]) -> str:
    """The tick summary as markdown: the per-playbook table, the reasons, and what failed."""
    lines = [f"# Touchflow tick at {at.isoformat()} UTC", "", f"Run `{run_id}`.", ""]
    total = {key: sum(int(r.get(key) or 0) for r in rows) for key in ("emails", "tasks", "deferred", "skipped")}
    lines.append(
        f"**{total['emails']} emails** and **{total['tasks']} tasks** sent; "
        f"{total['deferred']} deferred, {total['skipped']} skipped."
    )
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in COLUMNS) + " |")
    if why:
        lines += ["", "## Why not sent", "", "| playbook | decision | reason | count |", "|---|---|---|---|"]
        lines += [f"| {_cell(p)} | {_cell(d)} | {_cell(r)} | {n} |" for p, d, r, n in why]
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "## Failed", ""]
        lines += [f"- `{_cell(r['playbook'])}`: {_cell(r['error'])}" for r in failed]
    paused = [r for r in rows if r.get("paused")]
    if paused:
        lines += ["", "## Paused", ""]
        lines += [f"- `{_cell(r['playbook'])}`: {_cell(r.get('why_paused') or r['paused'])}" for r in paused]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    """A table cell: customer-influenced text cannot break the table or inject markup."""
    if value is None:
        return ""
    text = " ".join(str(value).split())
    for char in "|`<>*_[]":
        text = text.replace(char, "\\" + char)
    return text


def log_failures(logger: logging.Logger | logging.LoggerAdapter[logging.Logger], rows: list[dict[str, Any]]) -> None:
    """Log each failed playbook (error) and each paused one (warning) to the run's log."""
    for row in rows:
        if row.get("error"):
            logger.error("playbook '%s' failed: %s", row["playbook"], row["error"])
        elif row.get("paused"):
            logger.warning("playbook '%s' paused: %s", row["playbook"], row.get("why_paused") or row["paused"])
