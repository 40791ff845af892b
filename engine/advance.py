"""Advancing journeys: move due enrollments through their steps and plan deliveries.

For each due enrollment the steps run in order until a `wait` or the end. Emails and tasks become
ledger rows with a deterministic send key — written before anything is delivered, and unique, so
advancing the same enrollment twice (two overlapping ticks, a retry) plans nothing twice. The
enrollment's move is guarded by its old step index, so only one tick moves it.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.audit import Decision, Reason, audit_row, record
from engine.compile import CompiledPlaybook, CompiledStep
from engine.spec import EmailStep, TaskStep, WaitStep
from engine.spec.base import format_duration
from engine.store.models import contacts, enrollments, ledger

BATCH_SIZE = 500
_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class AdvanceResult:
    """What advancing one playbook planned and decided."""

    emails_planned: int = 0
    tasks_planned: int = 0
    skipped: int = 0
    waiting: int = 0
    completed: int = 0

    def add(self, other: AdvanceResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def send_key(playbook_id: str, step_id: str, enrollment: Row[Any], recipient: str) -> str:
    """Deterministic key of one delivery: playbook, step, subject, trigger occurrence, recipient."""
    raw = "|".join(
        [
            playbook_id,
            step_id,
            enrollment.subject_type,
            str(enrollment.subject_id),
            enrollment.trigger_key,
            recipient,
        ]
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def email_problem(address: str) -> str | None:
    """Why `address` cannot receive email, or None."""
    if not _EMAIL_SHAPE.match(address or ""):
        return f"'{address}' is not an email address"
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError) as exc:
        return f"'{address}' is not a valid address: {exc}"
    return None


@dataclass
class _Plan:
    ledger: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    result: AdvanceResult = field(default_factory=AdvanceResult)


def advance(conn: Connection, playbook: CompiledPlaybook, now: datetime, run_id: str, channel: str) -> AdvanceResult:
    """Advance every due enrollment of `playbook` at `now`, in batches. The caller commits."""
    total = AdvanceResult()
    while True:
        due = _due(conn, playbook, now)
        if not due:
            return total
        recipients = _recipients(conn, playbook, due)
        plan = _Plan()
        for enrollment in due:
            _advance_one(plan, playbook, enrollment, recipients, now, run_id, channel)
        _apply(conn, plan)
        total.add(plan.result)


def _due(conn: Connection, playbook: CompiledPlaybook, now: datetime) -> Sequence[Row[Any]]:
    e = enrollments.c
    stmt = (
        select(e.id, e.subject_type, e.subject_id, e.account_id, e.trigger_key, e.step_index)
        .where(e.playbook_id == playbook.id, e.status == "active", e.next_run_at <= now)
        .order_by(e.id)
        .limit(BATCH_SIZE)
    )
    if conn.dialect.name == "postgresql":
        # Overlapping ticks take disjoint batches instead of waiting on each other.
        stmt = stmt.with_for_update(skip_locked=True)
    return conn.execute(stmt).all()


def _recipients(conn: Connection, playbook: CompiledPlaybook, due: Sequence[Row[Any]]) -> dict[int, list[Row[Any]]]:
    """Contacts of the due subjects, keyed by account (or by contact for contact subjects)."""
    c = contacts.c
    cols = (c.id, c.account_id, c.email, c.name, c.role)
    by_owner: dict[int, list[Row[Any]]] = defaultdict(list)
    if playbook.subject == "contact":
        rows = conn.execute(select(*cols).where(c.id.in_([d.subject_id for d in due]))).all()
        for row in rows:
            by_owner[row.id].append(row)
    else:
        account_ids = sorted({d.account_id for d in due})
        rows = conn.execute(select(*cols).where(c.account_id.in_(account_ids)).order_by(c.id)).all()
        for row in rows:
            by_owner[row.account_id].append(row)
    return by_owner


def _advance_one(
    plan: _Plan,
    playbook: CompiledPlaybook,
    enrollment: Row[Any],
    recipients: dict[int, list[Row[Any]]],
    now: datetime,
    run_id: str,
    channel: str,
) -> None:
    base = {
        "at": now,
        "run_id": run_id,
        "playbook_id": playbook.id,
        "playbook_version": playbook.version,
        "enrollment_id": enrollment.id,
        "account_id": enrollment.account_id,
    }
    index = enrollment.step_index
    next_run_at: datetime | None = None
    status = "active"
    while index < len(playbook.steps):
        step = playbook.steps[index]
        index += 1
        if isinstance(step.spec, WaitStep):
            next_run_at = now + step.spec.wait
            plan.result.waiting += 1
            plan.audit.append(
                audit_row(
                    **base,
                    step_id=step.id,
                    decision=Decision.WAITING,
                    reason=Reason.WAIT_STEP,
                    detail=f"wait {format_duration(step.spec.wait)} until {next_run_at.isoformat()}",
                )
            )
            break
        if isinstance(step.spec, EmailStep):
            _plan_email(plan, playbook, step, step.spec, enrollment, recipients, base, channel)
        elif isinstance(step.spec, TaskStep):
            _plan_task(plan, playbook, step, enrollment, base)
    else:
        status = "completed"
        plan.result.completed += 1
        plan.audit.append(
            audit_row(
                **base,
                decision=Decision.COMPLETED,
                reason=Reason.JOURNEY_END,
                detail=f"all {len(playbook.steps)} steps done",
            )
        )
    plan.moves.append(
        {
            "b_id": enrollment.id,
            "b_old": enrollment.step_index,
            "u_step_index": index,
            "u_status": status,
            "u_next_run_at": next_run_at,
            "u_updated_at": now,
        }
    )


def _plan_email(
    plan: _Plan,
    playbook: CompiledPlaybook,
    step: CompiledStep,
    spec: EmailStep,
    enrollment: Row[Any],
    recipients: dict[int, list[Row[Any]]],
    base: dict[str, Any],
    channel: str,
) -> None:
    owner = enrollment.subject_id if playbook.subject == "contact" else enrollment.account_id
    people = recipients.get(owner, [])
    if spec.email.to is not None:
        roles = set(spec.email.to.role)
        people = [p for p in people if p.role in roles]
    if not people:
        plan.result.skipped += 1
        wanted = ", ".join(spec.email.to.role) if spec.email.to else "the contact"
        plan.audit.append(
            audit_row(
                **base,
                step_id=step.id,
                channel=channel,
                decision=Decision.SKIPPED,
                reason=Reason.NO_RECIPIENTS,
                detail=f"no contact with role {wanted}",
            )
        )
        return
    for person in people:
        key = send_key(playbook.id, step.id, enrollment, f"contact:{person.id}")
        problem = email_problem(person.email)
        row = {
            "send_key": key,
            "kind": "email",
            "channel": channel,
            "status": "skipped" if problem else "planned",
            "playbook_id": playbook.id,
            "playbook_version": playbook.version,
            "step_id": step.id,
            "enrollment_id": enrollment.id,
            "account_id": enrollment.account_id,
            "contact_id": person.id,
            "payload": {"template": spec.email.template, "from": spec.email.from_},
            "error": problem,
            "created_at": base["at"],
            "updated_at": base["at"],
        }
        plan.ledger.append(row)
        if problem:
            plan.result.skipped += 1
            plan.audit.append(
                audit_row(
                    **base,
                    step_id=step.id,
                    contact_id=person.id,
                    channel=channel,
                    decision=Decision.SKIPPED,
                    reason=Reason.INVALID_EMAIL,
                    detail=problem,
                    send_key=key,
                )
            )
        else:
            plan.result.emails_planned += 1


def _plan_task(
    plan: _Plan,
    playbook: CompiledPlaybook,
    step: CompiledStep,
    enrollment: Row[Any],
    base: dict[str, Any],
) -> None:
    key = send_key(playbook.id, step.id, enrollment, "task")
    plan.ledger.append(
        {
            "send_key": key,
            "kind": "task",
            "channel": "task",
            "status": "planned",
            "playbook_id": playbook.id,
            "playbook_version": playbook.version,
            "step_id": step.id,
            "enrollment_id": enrollment.id,
            "account_id": enrollment.account_id,
            "contact_id": enrollment.subject_id if playbook.subject == "contact" else None,
            "payload": {},
            "error": None,
            "created_at": base["at"],
            "updated_at": base["at"],
        }
    )
    plan.result.tasks_planned += 1


def _apply(conn: Connection, plan: _Plan) -> None:
    if plan.ledger:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(ledger).on_conflict_do_nothing(index_elements=["send_key"]), plan.ledger)
    record(conn, plan.audit)
    if plan.moves:
        e = enrollments.c
        stmt = (
            update(enrollments)
            .where(and_(e.id == bindparam("b_id"), e.step_index == bindparam("b_old")))
            .values(
                step_index=bindparam("u_step_index"),
                status=bindparam("u_status"),
                next_run_at=bindparam("u_next_run_at"),
                updated_at=bindparam("u_updated_at"),
            )
        )
        conn.execute(stmt, plan.moves)
