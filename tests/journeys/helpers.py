"""Shared helpers of the journey tests: one tick as the flow runs it, playbook text, and row readers.

Every journey playbook here is triggered by `plan: <playbook id>`, so a test enrolls an account in
a playbook by giving it that plan, and several playbooks can share one project.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, insert, select

from engine import tick
from engine.dispatch import OutboxChannel
from engine.project import Project
from engine.store.models import audit_log, enrollments, ledger, message_events, tasks
from tests.factories import project

NOW = datetime(2026, 11, 2, 9, 0)
"""A Monday, 09:00 UTC."""


def playbook(pid: str, steps: str, head: str = "") -> str:
    """A playbook `pid` that enrolls accounts whose plan is `pid`; `steps` is the indented step list."""
    return f"id: {pid}\nname: Journey {pid}\ntrigger: {{plan: {pid}}}\n{head}steps:\n{steps}"


def load(tmp_path: Path, db_url: str, *playbooks: str) -> Project:
    """A project holding exactly these playbook texts (on top of the repo's templates)."""
    return project(
        tmp_path, db_url, playbooks={text.split("\n", 1)[0].removeprefix("id: "): text for text in playbooks}
    )


def run_tick(engine: Engine, proj: Project, now: datetime, run_id: str = "tick") -> dict[str, tick.PlaybookSummary]:
    """What the flow does, without Prefect: evaluate and advance each active playbook, then dispatch
    the planned rows of those playbooks."""
    active = [p.id for p in proj.active()]
    return tick.run_stages(engine, proj, active, now, run_id, OutboxChannel(proj.settings.outbox_dir))


def _rows(engine: Engine, table: Any, where: dict[str, Any]) -> list[Row[Any]]:
    stmt = select(table).order_by(table.c.id)
    for key, value in where.items():
        stmt = stmt.where(table.c[key] == value)
    with engine.connect() as conn:
        return list(conn.execute(stmt).all())


def audit(engine: Engine, **where: Any) -> list[Row[Any]]:
    """Audit rows in the order they were written."""
    return _rows(engine, audit_log, where)


def ledger_rows(engine: Engine, **where: Any) -> list[Row[Any]]:
    """Ledger rows in the order they were planned."""
    return _rows(engine, ledger, where)


def task_rows(engine: Engine, **where: Any) -> list[Row[Any]]:
    return _rows(engine, tasks, where)


def enrollment(engine: Engine, account_id: int, playbook_id: str | None = None) -> Row[Any]:
    """The one enrollment of an account (in `playbook_id`, when given)."""
    where: dict[str, Any] = {"account_id": account_id}
    if playbook_id is not None:
        where["playbook_id"] = playbook_id
    (row,) = _rows(engine, enrollments, where)
    return row


def steps_done(engine: Engine, account_id: int) -> list[str]:
    """The step ids the ledger planned for an account, in order."""
    return [r.step_id for r in ledger_rows(engine, account_id=account_id)]


def decisions(engine: Engine, **where: Any) -> list[tuple[str, str, str | None]]:
    """(decision, reason, step id) of the audit rows, in order."""
    return [(r.decision, r.reason, r.step_id) for r in audit(engine, **where)]


def message_event(engine: Engine, send_key: str, event: str, at: datetime) -> None:
    """What the email provider reports about a sent message: delivered, open, click."""
    with engine.begin() as conn:
        conn.execute(insert(message_events), [{"send_key": send_key, "event": event, "occurred_at": at, "payload": {}}])
