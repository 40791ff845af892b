"""The data of one advance batch: the due enrollments, what the batch fetched set-based before
walking (recipients, suppressions, unreadable rows, account and contact rows for waits and
updates), what the walk decided (`Plan`: ledger rows, audit rows, enrollment moves, updates) and
`Walk`, one enrollment's walk through its steps, where step handlers record their decisions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from engine.audit import Decision, Reason, audit_row
from engine.compile import CompiledPlaybook, CompiledStep
from engine.plan.versions import SentInEnrollment
from engine.spec import UpdateStep
from engine.store.models import accounts, contacts, enrollments
from engine.store.readable import read_rows
from engine.suppression import listed

Running = list[tuple[Row[Any], CompiledPlaybook, int]]
"""(enrollment, the playbook version it runs on, the step index it starts at) per due enrollment."""


@dataclass
class AdvanceResult:
    """What advancing one playbook planned and decided."""

    emails_planned: int = 0
    tasks_planned: int = 0
    webhooks_planned: int = 0
    skipped: int = 0
    waiting: int = 0
    completed: int = 0
    converted: int = 0
    exited: int = 0
    updated: int = 0

    def add(self, other: AdvanceResult) -> None:
        """Add `other`'s counts to these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Plan:
    """What the walks of a batch decided, written together once the batch is walked."""

    ledger: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[UpdateStep, int, int, int | None]] = field(
        default_factory=list
    )  # step, enrollment, account, contact
    result: AdvanceResult = field(default_factory=AdvanceResult)


@dataclass
class Batch:
    """What the walk needs to know about a batch, fetched set-based before walking."""

    now: datetime
    run_id: str
    channel: str
    recipients: dict[int, list[Row[Any]]]
    suppressed: dict[str, str]  # lower-cased address → why it must not be emailed
    unreadable: dict[int, str]  # contact id → what is wrong with its row (engine/store/readable.py)
    places: dict[int, dict[str, Any]]  # enrollment id → account/contact fields used by waits
    holds: dict[tuple[str, str, str], set[int]]  # (version, step id, "if"|"branch") → enrollments it holds for
    steps_taken: dict[int, int]  # per enrollment, across the rounds of this tick: a loop guard
    sent: SentInEnrollment = field(default_factory=SentInEnrollment)  # emails each recipient already has


# --- moves and ends -----------------------------------------------------------------------------


def audit_base(enrollment: Row[Any], playbook: CompiledPlaybook, now: datetime, run_id: str) -> dict[str, Any]:
    """The audit fields every decision about `enrollment` shares."""
    return {
        "at": now,
        "run_id": run_id,
        "playbook_id": playbook.id,
        "playbook_version": playbook.version,
        "enrollment_id": enrollment.id,
        "account_id": enrollment.account_id,
        "contact_id": enrollment.subject_id if enrollment.subject_type == "contact" else None,
    }


def move(
    enrollment: Row[Any],
    playbook: CompiledPlaybook,
    index: int,
    status: str,
    next_run_at: datetime | None,
    outcome: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The parameters of the guarded UPDATE that moves `enrollment` to step `index` of `playbook`
    (or ends it): `b_*` pick the row as it was planned on, `u_*` are the new values."""
    step = playbook.steps[index].id if index < len(playbook.steps) else None
    return {
        "b_id": enrollment.id,
        "b_old": enrollment.step_index,
        "u_step_index": index,
        "u_step_id": step,
        "u_status": status,
        "u_next_run_at": next_run_at,
        "u_updated_at": now,
        "u_version": playbook.version,
        "u_outcome": outcome,
        "u_ended_at": None if status == "active" else now,
    }


def end(
    plan: Plan,
    enrollment: Row[Any],
    playbook: CompiledPlaybook,
    status: str,
    reason: Reason,
    detail: str,
    now: datetime,
    run_id: str,
    index: int | None = None,
) -> None:
    """End the journey as `status` (completed, converted, exited): its audit row, its count and its
    move (at step `index`, or where it stands when None)."""
    decision = {"converted": Decision.CONVERTED, "exited": Decision.EXITED}.get(status, Decision.COMPLETED)
    # The step the journey ends at (an exit step), as the enrollment records it; none past the end.
    at_step = playbook.steps[index].id if index is not None and index < len(playbook.steps) else None
    plan.audit.append(
        audit_row(
            **audit_base(enrollment, playbook, now, run_id),
            step_id=at_step,
            decision=decision,
            reason=reason,
            detail=detail,
        )
    )
    counter = {"converted": "converted", "exited": "exited"}.get(status, "completed")
    setattr(plan.result, counter, getattr(plan.result, counter) + 1)
    step_index = enrollment.step_index if index is None else index
    plan.moves.append(move(enrollment, playbook, step_index, status, None, detail, now))


@dataclass
class Walk:
    """One enrollment walking the steps of the version it runs on, in one batch."""

    plan: Plan
    batch: Batch
    playbook: CompiledPlaybook
    enrollment: Row[Any]
    base: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.base = audit_base(self.enrollment, self.playbook, self.batch.now, self.batch.run_id)

    @property
    def now(self) -> datetime:
        """The tick's `now`."""
        return self.batch.now

    def holds(self, step: CompiledStep, which: str) -> bool:
        """Whether the step's condition (`if` or `branch`) holds for this enrollment."""
        return self.enrollment.id in self.batch.holds.get((self.playbook.version, step.id, which), set())

    def audit(self, step: CompiledStep, decision: Decision, reason: Reason, detail: str, **fields: Any) -> None:
        """Record a decision about `step`; `fields` adds or overrides audit columns (channel, send
        key, variant, the contact a delivery is for)."""
        self.plan.audit.append(
            audit_row(**(self.base | {"step_id": step.id} | fields), decision=decision, reason=reason, detail=detail)
        )

    def move_to(self, index: int, next_run_at: datetime) -> None:
        """Stay active, at step `index`, due again at `next_run_at`."""
        self.plan.moves.append(move(self.enrollment, self.playbook, index, "active", next_run_at, None, self.now))

    def end(self, status: str, reason: Reason, detail: str, index: int | None = None) -> None:
        """End the journey (see `end`)."""
        end(self.plan, self.enrollment, self.playbook, status, reason, detail, self.now, self.batch.run_id, index)


# --- loading ------------------------------------------------------------------------------------


def due(conn: Connection, playbook: CompiledPlaybook, now: datetime, limit: int) -> Sequence[Row[Any]]:
    """Up to `limit` active enrollments of `playbook` due at `now`, oldest first."""
    e = enrollments.c
    stmt = (
        select(
            e.id,
            e.subject_type,
            e.subject_id,
            e.account_id,
            e.trigger_key,
            e.step_index,
            e.step_id,
            e.playbook_version,
            e.enrolled_at,
        )
        .where(e.playbook_id == playbook.id, e.status == "active", e.next_run_at <= now)
        .order_by(e.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        # Overlapping ticks take disjoint batches instead of waiting on each other.
        stmt = stmt.with_for_update(skip_locked=True)
    return conn.execute(stmt).all()


def recipients(
    conn: Connection, playbook: CompiledPlaybook, due: Sequence[Row[Any]]
) -> tuple[dict[int, list[Row[Any]]], dict[int, str]]:
    """Contacts of the due subjects, keyed by account (or by contact for contact subjects), and
    what is wrong with the rows that cannot be read (each costs its own delivery only)."""
    if not due:
        return {}, {}
    c = contacts.c
    cols = (c.id, c.account_id, c.email, c.name, c.role)
    by_owner: dict[int, list[Row[Any]]] = defaultdict(list)
    if playbook.subject == "contact":
        read = read_rows(conn, select(*cols).where(c.id.in_([d.subject_id for d in due])), contacts)
        for row in read.rows:
            by_owner[row.id].append(row)
    else:
        account_ids = sorted({d.account_id for d in due})
        read = read_rows(conn, select(*cols).where(c.account_id.in_(account_ids)).order_by(c.id), contacts)
        for row in read.rows:
            by_owner[row.account_id].append(row)
    return by_owner, read.problems


def suppressed(conn: Connection, recipients: dict[int, list[Row[Any]]]) -> dict[str, str]:
    """Which of the batch's recipients are on the suppression list, and why."""
    return listed(conn, (p.email or "" for people in recipients.values() for p in people))


def places(conn: Connection, playbook: CompiledPlaybook, due: Sequence[Row[Any]]) -> dict[int, dict[str, Any]]:
    """Per enrollment: the account's (and contact's) row, for waits on dates and local windows, and
    under "problems" what is wrong with either row when it cannot be read (update steps skip it)."""
    if not due:
        return {}
    read = read_rows(conn, select(accounts).where(accounts.c.id.in_(sorted({d.account_id for d in due}))), accounts)
    account_rows = {r.id: dict(r._mapping) for r in read.rows}
    problems = {("account", i): p for i, p in read.problems.items()}
    contact_rows: dict[int, dict[str, Any]] = {}
    if playbook.subject == "contact":
        ids = sorted({d.subject_id for d in due})
        read = read_rows(conn, select(contacts).where(contacts.c.id.in_(ids)), contacts)
        contact_rows = {r.id: dict(r._mapping) for r in read.rows}
        problems.update({("contact", i): p for i, p in read.problems.items()})
    out = {}
    for d in due:
        out[d.id] = {"account": account_rows.get(d.account_id, {}), "contact": contact_rows.get(d.subject_id, {})}
        found = {"account": problems.get(("account", d.account_id)), "contact": problems.get(("contact", d.subject_id))}
        if any(found.values()):
            out[d.id]["problems"] = found
    return out
