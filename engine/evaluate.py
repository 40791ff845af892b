"""Evaluation: run a compiled playbook's SQL at `now` and enroll new subjects, set-based.

Nothing here loops over customers: one COUNT for the report, one INSERT … SELECT guarded by the
enrollments' unique key (so concurrent or repeated ticks enroll nobody twice), and one
INSERT … SELECT of the audit rows for the enrollments this run made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, String, and_, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.audit import Decision, Reason
from engine.compile import CompiledPlaybook
from engine.store.models import audit_log, condition_state, enrollments


@dataclass(frozen=True)
class EvaluateResult:
    """Subjects matching segment ∧ trigger, and how many of them entered now."""

    matched: int
    enrolled: int


def _insert(conn: Connection) -> postgresql.Insert | sqlite.Insert:
    # ON CONFLICT DO NOTHING is spelled the same on both, but lives on each dialect's Insert.
    return postgresql.insert(enrollments) if conn.dialect.name == "postgresql" else sqlite.insert(enrollments)


def evaluate(conn: Connection, playbook: CompiledPlaybook, now: datetime, run_id: str) -> EvaluateResult:
    """Count matches and enroll new subjects at `now`. The caller owns the transaction."""
    matched = conn.execute(playbook.matched_count(now)).scalar_one()
    cand = playbook.candidates(now).subquery("candidates")
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
        _insert(conn)
        .from_select([c.name for c in source.selected_columns], source)
        .on_conflict_do_nothing(index_elements=["playbook_id", "subject_type", "subject_id", "trigger_key"])
        # INSERT … SELECT rowcount is only kept on request (psycopg reports -1 otherwise).
        .execution_options(preserve_rowcount=True)
    )
    enrolled = conn.execute(stmt).rowcount
    if enrolled:
        _audit_enrollments(conn, playbook, now, run_id)
    if playbook.edge_triggered:
        _remember_condition(conn, playbook, now)
    return EvaluateResult(matched=int(matched), enrolled=max(enrolled, 0))


def _remember_condition(conn: Connection, playbook: CompiledPlaybook, now: datetime) -> None:
    """Record, set-based, for whom the condition holds now: the edge the next tick compares with."""
    holding = playbook.matching_subjects(now).subquery("holding")
    cs = condition_state.c
    mine = and_(cs.playbook_id == playbook.id, cs.subject_type == playbook.subject)
    conn.execute(
        update(condition_state)
        .where(mine, cs.is_true.is_(True), cs.subject_id.not_in(select(holding.c.subject_id)))
        .values(is_true=False, changed_at=now)
    )
    rows = select(
        literal(playbook.id, String).label("playbook_id"),
        literal(playbook.subject, String).label("subject_type"),
        holding.c.subject_id,
        literal(True).label("is_true"),
        literal(now).label("changed_at"),
    ).where(holding.c.subject_id.is_not(None))
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(condition_state).from_select([c.name for c in rows.selected_columns], rows)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["playbook_id", "subject_type", "subject_id"],
            set_={"is_true": True, "changed_at": now},
            where=condition_state.c.is_true.is_(False),
        )
    )


def _audit_enrollments(conn: Connection, playbook: CompiledPlaybook, now: datetime, run_id: str) -> None:
    e = enrollments.c
    detail = literal(f"{playbook.describe_trigger()}; occurrence ", String) + e.trigger_key
    contact_id = e.subject_id if playbook.subject == "contact" else literal(None)
    rows = select(
        literal(now).label("at"),
        e.run_id,
        e.playbook_id,
        e.playbook_version,
        e.id.label("enrollment_id"),
        e.account_id,
        contact_id.label("contact_id"),
        literal(Decision.ENROLLED.value, String).label("decision"),
        literal(Reason.TRIGGER_MATCHED.value, String).label("reason"),
        detail.label("detail"),
    ).where(e.playbook_id == playbook.id, e.run_id == run_id, e.enrolled_at == now)
    conn.execute(audit_log.insert().from_select([c.name for c in rows.selected_columns], rows))
