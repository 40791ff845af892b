"""CSM tasks as people work them: listed per CSM and status, and closed with an outcome.

Closing is what makes the manager's view mean something (`touchflow portfolio`: tasks opened and
closed by reason): a task is done with `closed_at`, its `outcome` (why: resolved, no_action,
churned …) and who closed it, and an audit row says so. Task titles come from templates over
customer data: they are shown as text, control characters replaced.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from engine.audit import Decision, Reason, audit_row, record
from engine.store.models import csms, tasks

TASK_FIELDS = (
    "id",
    "status",
    "csm",
    "account_id",
    "playbook",
    "step",
    "priority",
    "title",
    "created_at",
    "due_at",
    "age_days",
    "outcome",
    "closed_at",
    "closed_by",
)
OUTCOME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]{0,39}$")
"""An outcome: a short code or phrase (the column holds 40 characters)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class TaskError(ValueError):
    """A task cannot be closed as asked (already done); the message says why."""


def visible(text: str | None) -> str:
    """Customer-derived text fit for a terminal: control characters (escapes, newlines) as spaces."""
    return _CONTROL.sub(" ", text or "")


def csm_emails(conn: Connection) -> dict[str, int]:
    """Every CSM's address (lower case) → id; the first id when two share an address."""
    found: dict[str, int] = {}
    for cid, email in conn.execute(select(csms.c.id, csms.c.email).order_by(csms.c.id)):
        found.setdefault(str(email).strip().lower(), int(cid))
    return found


def find_csm(conn: Connection, email: str) -> int:
    """The id of the CSM with this address (any case); LookupError naming the valid ones."""
    known = csm_emails(conn)
    if email.strip().lower() in known:
        return known[email.strip().lower()]
    raise LookupError(sorted(known))


def list_tasks(
    conn: Connection, now: datetime, csm_id: int | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Tasks oldest first, with their CSM's address and, while open, their age in whole days."""
    query = (
        select(tasks, csms.c.email.label("csm_email"))
        .select_from(tasks.outerjoin(csms, csms.c.id == tasks.c.csm_id))
        .order_by(tasks.c.created_at, tasks.c.id)
    )
    if csm_id is not None:
        query = query.where(tasks.c.csm_id == csm_id)
    if status is not None:
        query = query.where(tasks.c.status == status)
    rows = []
    for t in conn.execute(query):
        rows.append(
            {
                "id": int(t.id),
                "status": t.status,
                "csm": t.csm_email or (f"queue:{t.queue}" if t.queue else None),
                "account_id": t.account_id,
                "playbook": t.playbook_id,
                "step": t.step_id,
                "priority": t.priority,
                "title": visible(t.title),
                "created_at": t.created_at.isoformat(),
                "due_at": t.due_at.isoformat(),
                "age_days": (now - t.created_at).days if t.status == "open" else None,
                "outcome": t.outcome,
                "closed_at": t.closed_at.isoformat() if t.closed_at else None,
                "closed_by": t.closed_by,
            }
        )
    return rows


def close_task(conn: Connection, task_id: int, outcome: str, who: str, now: datetime) -> None:
    """Mark the task done with `outcome`, by `who`, at `now`, and audit it. LookupError when no
    task has this id; TaskError when it is already done (its closing is never rewritten)."""
    row = conn.execute(select(tasks).where(tasks.c.id == task_id)).one_or_none()
    if row is None:
        raise LookupError(task_id)
    # Guarded by the status, so two people closing the same task at once close it once.
    done = conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.status != "done")
        .values(status="done", closed_at=now, outcome=outcome, closed_by=who, updated_at=now)
    )
    if done.rowcount != 1:
        current = conn.execute(select(tasks.c.closed_at, tasks.c.closed_by).where(tasks.c.id == task_id)).one()
        when = f" on {current.closed_at:%Y-%m-%d %H:%M}" if current.closed_at else ""
        by = f" by {current.closed_by}" if current.closed_by else ""
        raise TaskError(f"task {task_id} is already done (closed{when}{by})")
    detail = f"task {task_id} closed by {who}: {outcome}; open {(now - row.created_at).days} days"
    record(
        conn,
        [
            audit_row(
                at=now,
                run_id=f"tasks/{who}"[:64],
                playbook_id=row.playbook_id,
                playbook_version="",
                decision=Decision.TASK_CLOSED,
                reason=Reason.CLOSED_BY_CSM,
                detail=detail,
                step_id=row.step_id,
                account_id=row.account_id,
                channel="task",
                send_key=row.send_key,
            )
        ],
    )
