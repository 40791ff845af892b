"""Evaluation: run a compiled playbook's SQL at `now` and enroll new subjects, set-based.

Nothing here loops over customers: one COUNT for the report, one INSERT … SELECT guarded by the
enrollments' unique key (so concurrent or repeated ticks enroll nobody twice), and one
INSERT … SELECT of the audit rows for the enrollments this run made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, String, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from engine.audit import Decision, Reason
from engine.compile import CompiledPlaybook
from engine.store.models import audit_log, enrollments


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
    return EvaluateResult(matched=int(matched), enrolled=max(enrolled, 0))


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
