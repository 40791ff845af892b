"""The evaluate stage (occurrences → enrollments): run a compiled playbook's SQL at `now` and
enroll new subjects, set-based.

Nothing here loops over customers: one COUNT for the report, one INSERT … SELECT guarded by the
enrollments' unique key (so concurrent or repeated ticks enroll nobody twice), and one
INSERT … SELECT of the audit rows for the enrollments this run made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Select,
    String,
    Subquery,
    Table,
    and_,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from engine.audit import Decision, Reason
from engine.compile import CompiledPlaybook
from engine.guard.checks import Circuit
from engine.plan.versions import remember
from engine.store.bulk import conflict_insert
from engine.store.models import audit_log, condition_state, enrollments


@dataclass(frozen=True)
class EvaluateResult:
    """Subjects matching segment ∧ trigger, and how many of them entered now."""

    matched: int
    enrolled: int
    circuit: str | None = None
    """Set when the circuit breaker tripped: what the tick would have enrolled (nobody was)."""


def evaluate(
    conn: Connection, playbook: CompiledPlaybook, now: datetime, run_id: str, circuit: Circuit | None = None
) -> EvaluateResult:
    """Match and enroll at `now`. The caller owns the transaction.

    The playbook's predicate runs once: its occurrences go to a temporary table, which gives
    `matched`, feeds the guarded enrollment insert and, for edge triggers, the condition state.
    With a `circuit`, what would be admitted is counted before the INSERT; a trip enrolls nobody.
    """
    lock_playbook(conn, playbook.id)
    remember(conn, playbook, now)
    scratch = _scratch_table()
    scratch.create(conn)
    try:
        conn.execute(
            insert(scratch).from_select(["subject_id", "account_id", "trigger_key"], playbook.occurrences(now))
        )
        matched = conn.execute(select(func.count()).select_from(scratch)).scalar_one()
        # Enrollments carry this call's own token: a retried task (same run id, same now) must
        # audit only what it inserted itself.
        batch = f"{run_id}/{uuid.uuid4().hex[:8]}"
        # Fewer matches than the ceiling cannot exceed it: the admitted rows are counted only above it.
        if circuit is not None and matched > playbook.spec.limits.max_enrollments:
            would = conn.execute(select(func.count()).select_from(playbook.admit(scratch, now).subquery())).scalar_one()
            trip = circuit.trip(conn, playbook, now, run_id, int(would))
            if trip is not None:
                return EvaluateResult(matched=int(matched), enrolled=0, circuit=trip.describe(playbook.subject))
        enrolled = _enroll(conn, playbook, playbook.admit(scratch, now), now, batch) if matched else 0
        if enrolled:
            _audit_enrollments(conn, playbook, now, run_id, batch)
        if playbook.edge_triggered:
            _remember_condition(conn, playbook, select(scratch.c.subject_id).distinct().subquery("holding"), now)
    finally:
        if conn.dialect.name != "postgresql":  # PostgreSQL drops it at commit (or rollback)
            scratch.drop(conn)
    return EvaluateResult(matched=int(matched), enrolled=enrolled)


def lock_playbook(conn: Connection, playbook_id: str) -> None:
    """Serialise evaluation (and advancing) of one playbook across overlapping ticks.

    Entry guards are check-then-insert, and occurrence keys that depend on `now` (the day for
    `once_per`, the minute of an edge) differ between two ticks, so the unique key alone cannot
    stop both from enrolling. On PostgreSQL a transaction-scoped advisory lock per playbook does;
    SQLite already serialises writers.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"touchflow:{playbook_id}"))))


def _scratch_table() -> Table:
    # A fresh name per call: temporary tables are per connection, but a dry run evaluates several
    # playbooks on one connection.
    return Table(
        f"tf_occurrences_{uuid.uuid4().hex[:12]}",
        MetaData(),
        Column("subject_id", Integer),
        Column("account_id", Integer),
        Column("trigger_key", String(64)),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


def _enroll(conn: Connection, playbook: CompiledPlaybook, admitted: Select[Any], now: datetime, run_id: str) -> int:
    cand = admitted.subquery("candidates")
    source = select(
        literal(playbook.id, String).label("playbook_id"),
        literal(playbook.version, String).label("playbook_version"),
        literal(playbook.subject, String).label("subject_type"),
        cand.c.subject_id,
        cand.c.account_id,
        cand.c.trigger_key,
        literal("active", String).label("status"),
        literal(0).label("step_index"),
        literal(now).label("next_run_at"),
        literal(now).label("enrolled_at"),
        literal(now).label("updated_at"),
        literal(run_id, String).label("run_id"),
    ).where(cand.c.subject_id.is_not(None))  # a WHERE keeps SQLite's INSERT…SELECT…ON CONFLICT unambiguous
    stmt = (
        conflict_insert(conn, enrollments)
        .from_select([c.name for c in source.selected_columns], source)
        .on_conflict_do_nothing(index_elements=["playbook_id", "subject_type", "subject_id", "trigger_key"])
        # INSERT … SELECT rowcount is only kept on request (psycopg reports -1 otherwise).
        .execution_options(preserve_rowcount=True)
    )
    return max(conn.execute(stmt).rowcount, 0)


def _remember_condition(conn: Connection, playbook: CompiledPlaybook, holding: Subquery, now: datetime) -> None:
    """Record, set-based, for whom the condition holds now, and who is armed for the next edge.

    A subject is armed until it enters; it is armed again once the condition is seen false. An
    edge seen while the cooldown still blocks entry therefore stays pending instead of being lost.
    """
    cs = condition_state.c
    mine = and_(cs.playbook_id == playbook.id, cs.subject_type == playbook.subject)
    held = select(holding.c.subject_id)
    conn.execute(
        update(condition_state)
        .where(mine, cs.subject_id.not_in(held), or_(cs.is_true.is_(True), cs.armed.is_(False)))
        .values(is_true=False, armed=True, changed_at=now)
    )
    rows = select(
        literal(playbook.id, String).label("playbook_id"),
        literal(playbook.subject, String).label("subject_type"),
        holding.c.subject_id,
        literal(True).label("is_true"),
        literal(True).label("armed"),
        literal(now).label("changed_at"),
    ).where(holding.c.subject_id.is_not(None))
    stmt = conflict_insert(conn, condition_state).from_select([c.name for c in rows.selected_columns], rows)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["playbook_id", "subject_type", "subject_id"],
            set_={"is_true": True, "changed_at": now},
            where=condition_state.c.is_true.is_(False),
        )
    )
    entered = select(enrollments.c.subject_id).where(
        enrollments.c.playbook_id == playbook.id,
        enrollments.c.subject_type == playbook.subject,
        enrollments.c.enrolled_at == now,
    )
    conn.execute(update(condition_state).where(mine, cs.subject_id.in_(entered)).values(armed=False))


def _audit_enrollments(conn: Connection, playbook: CompiledPlaybook, now: datetime, run_id: str, batch: str) -> None:
    e = enrollments.c
    detail = literal(f"{playbook.describe_trigger()}; occurrence ", String) + e.trigger_key
    contact_id = e.subject_id if playbook.subject == "contact" else literal(None)
    rows = select(
        literal(now).label("at"),
        literal(run_id, String).label("run_id"),
        e.playbook_id,
        e.playbook_version,
        e.id.label("enrollment_id"),
        e.account_id,
        contact_id.label("contact_id"),
        literal(Decision.ENROLLED.value, String).label("decision"),
        literal(Reason.TRIGGER_MATCHED.value, String).label("reason"),
        detail.label("detail"),
    ).where(e.playbook_id == playbook.id, e.run_id == batch)
    conn.execute(audit_log.insert().from_select([c.name for c in rows.selected_columns], rows))
