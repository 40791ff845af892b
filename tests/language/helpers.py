"""Helpers for the language behaviour tests: compile a playbook from YAML text, see who matches, enroll."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update

from engine.compile import CompiledPlaybook, compile_playbook
from engine.load import load_playbook_text
from engine.plan import EvaluateResult, evaluate
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.store.models import condition_state, enrollments, events

PLAYBOOK_ID = "lang-test"
_runs = itertools.count(1)


def playbook_yaml(
    trigger: str,
    *,
    subject: str = "account",
    segment: str | None = None,
    entry: str | None = None,
    pid: str = PLAYBOOK_ID,
) -> str:
    """A complete playbook around a trigger (and optional segment / entry), each a YAML flow value."""
    lines = [f"id: {pid}", "name: Language test", f"subject: {subject}"]
    if segment is not None:
        lines.append(f"segment: {segment}")
    lines.append(f"trigger: {trigger}")
    if entry is not None:
        lines.append(f"entry: {entry}")
    lines += ["steps:", "  - task: {title: Look}"]
    return "\n".join(lines) + "\n"


def compiled(yaml_text: str, traits: TraitTypes = NO_TRAITS) -> CompiledPlaybook:
    """Load and compile playbook text (under the project's declared trait types)."""
    return compile_playbook(load_playbook_text(yaml_text, f"{PLAYBOOK_ID}.yaml"), traits)


def matching(db: Engine, yaml_text: str, now: datetime, traits: TraitTypes = NO_TRAITS) -> set[int]:
    """The subject ids for which segment ∧ trigger hold at `now`."""
    query = compiled(yaml_text, traits).matching_subjects(now)
    with db.connect() as conn:
        return {int(row.subject_id) for row in conn.execute(query)}


def who(
    db: Engine, condition: str, now: datetime, subject: str = "account", traits: TraitTypes = NO_TRAITS
) -> set[int]:
    """The subjects a condition (used as a condition trigger) holds for at `now`."""
    return matching(db, playbook_yaml(condition, subject=subject), now, traits)


def run(db: Engine, playbook: CompiledPlaybook, now: datetime) -> list[tuple[int, str]]:
    """Evaluate in a transaction; the (subject_id, trigger_key) this run enrolled, sorted."""
    run_id = f"run-{next(_runs)}"
    with db.begin() as conn:
        result: EvaluateResult = evaluate(conn, playbook, now, run_id)
        rows = conn.execute(
            select(enrollments.c.subject_id, enrollments.c.trigger_key).where(
                enrollments.c.run_id.like(f"{run_id}/%")  # evaluate tags enrollments with run_id/token
            )
        ).all()
    enrolled = sorted((int(r.subject_id), str(r.trigger_key)) for r in rows)
    assert result.enrolled == len(enrolled)
    return enrolled


def enrolled_ids(db: Engine, playbook: CompiledPlaybook, now: datetime) -> list[int]:
    """Evaluate at `now`; the subject ids enrolled by this run (sorted, repeated per enrollment)."""
    return [subject for subject, _ in run(db, playbook, now)]


def complete_all(db: Engine) -> None:
    """End every active journey, as if its steps had all run."""
    with db.begin() as conn:
        conn.execute(update(enrollments).where(enrollments.c.status == "active").values(status="completed"))


def condition_states(db: Engine) -> dict[int, tuple[bool, datetime]]:
    """subject_id → (is_true, changed_at) from condition_state."""
    with db.connect() as conn:
        rows = conn.execute(select(condition_state)).all()
    return {int(r.subject_id): (bool(r.is_true), r.changed_at) for r in rows}


def add_events(
    db: Engine,
    now: datetime,
    account_id: int,
    name: str,
    ago: Sequence[timedelta | float],
    *,
    contact_id: int | None = None,
    properties: dict[str, Any] | None = None,
) -> None:
    """Events `ago` before `now` (a float is days; negative is in the future)."""
    rows = [
        {
            "account_id": account_id,
            "contact_id": contact_id,
            "name": name,
            "occurred_at": now - (a if isinstance(a, timedelta) else timedelta(days=a)),
            "properties": properties or {},
        }
        for a in ago
    ]
    with db.begin() as conn:
        conn.execute(insert(events), rows)
