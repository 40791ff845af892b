"""A simulation report as text for people, in 80 columns: tables with short numeric columns, and
reasons, splits and notes as wrapped lines of their own (never squeezed into a cell)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

from rich import box
from rich.table import Table

from engine.simulate.replay import SimulationReport
from engine.simulate.report import WeekFigures

WIDTH = 80
COLUMNS = (
    ("week", "week"),
    ("enrolled", "entries"),
    ("emails", "sent"),
    ("deferred", "deferred"),
    ("skipped", "skipped"),
    ("tasks", "tasks"),
    ("goals", "goals"),
    ("exits", "exits"),
    ("failed", "failed"),
)

Renderable = Table | str


def _table(title: str, rows: list[WeekFigures]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
    for _, header in COLUMNS:
        table.add_column(header, justify="left" if header == "week" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(getattr(row, name)) for name, _ in COLUMNS))
    return table


def _cell(value: Any) -> str:
    return str(sum(value.values())) if isinstance(value, dict) else str(value)


def _wrapped(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ")


def _reasons(rows: list[WeekFigures]) -> Iterator[str]:
    """Deferrals and skips by reason, one line per week that has any."""
    for row in rows:
        for what in ("deferred", "skipped"):
            reasons: dict[str, int] = getattr(row, what)
            if reasons:
                listed = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
                yield _wrapped(f"{row.week} {what}: {listed}")


def render(report: SimulationReport) -> list[Renderable]:
    """The report, part by part: per playbook (table, reasons, branch splits, unusual events,
    why nobody matched), the totals, the busiest contacts, `--who`, and what it cannot know."""
    out: list[Renderable] = []
    funnels = {f.playbook: f for f in report.funnels}
    for pid, rows in report.by_playbook().items():
        out.append(_table(pid, rows))
        out.extend(_reasons(rows))
        for split in (b for b in report.branches if b.playbook == pid):
            out.append(_wrapped(f"{split.week} branch {split.step}: {split.count} × {split.path}"))
        for event in (n for n in report.notable if n.playbook == pid):
            first = event.first.isoformat(sep=" ", timespec="minutes")
            detail = f": {event.detail}" if event.detail else ""
            out.append(_wrapped(f"{event.week} {event.reason} ×{event.count}, first on {first}{detail}"))
        if pid in funnels:
            f = funnels[pid]
            out.append(_wrapped(f"matched nobody; left after each condition at {f.at.isoformat(sep=' ')}:"))
            out.extend(_wrapped(f"{s.left:>8}  {s.condition}", "  ") for s in f.steps)
        out.append("")
    if len(report.playbooks) > 1:
        out.append(_table(f"all {len(report.playbooks)} playbooks", [*report.totals(), report.total()]))
        out.extend(_reasons([report.total()]))
        out.append("")
    out.append(_wrapped(report.over_messaging(), ""))
    if report.busiest:
        out.append("busiest contacts (emails per week):")
        for busy in report.busiest:
            weeks = ", ".join(f"{week} {n}" for week, n in busy.per_week.items())
            out.append(_wrapped(f"{busy.total:>4}  {busy.email or busy.contact_id} ({weeks})"))
    if report.who is not None:
        out.append("")
        out.append(f"who: {report.who} ({len(report.recipients)} deliveries)")
        for r in report.recipients:
            what = "/".join(x for x in (r.template, r.variant) if x) or r.kind
            to = r.email or f"account {r.account_id}"
            when = r.planned_at.isoformat(sep=" ", timespec="minutes")
            out.append(_wrapped(f"{when}  {to}  {r.step}: {what} via {r.channel}, {r.status}"))
    if report.notes:
        out.append("")
        out.append("what a simulation cannot know:")
        out.extend(_wrapped(f"- {note}") for note in report.notes)
    return out
