"""The example playbook of book L1546 (seed B19): a lukewarm survey answer (7 or 8) is acted on
only when the account's computed health is below 70. A tick on a small store with a few days of
health history enrolls exactly the accounts whose latest score is below 70, and the audit says
which trigger brought each one in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, select

import engine.tick as api
from engine.dispatch import OutboxChannel
from engine.store.models import audit_log, enrollments, health_history, ledger
from tests.conftest import REPO
from tests.factories import Store, project
from tests.health.helpers import NOW, add_events

PLAYBOOK = "survey-low-health"


def _history(db: Engine, account_id: int, scores: list[tuple[int, float]]) -> None:
    """Scores (days ago, score) of one account, banded like the project's model."""
    rows = [
        {
            "account_id": account_id,
            "computed_on": NOW.date() - timedelta(days=days),
            "score": score,
            "band": "healthy" if score >= 70 else "at_risk" if score >= 50 else "unhealthy",
            "components": {"adoption": {"value": 10, "points": 50, "why": "low"}},
        }
        for days, score in scores
    ]
    with db.begin() as conn:
        conn.execute(insert(health_history), rows)


def _answered(db: Engine, account_id: int, contact_id: int, score: int, days_ago: float) -> None:
    add_events(db, account_id, "nps_response", [(days_ago, contact_id, {"score": score})])


def test_a_tick_intervenes_where_a_lukewarm_answer_meets_health_below_70(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    store = Store(db, NOW)
    cases: dict[str, int] = {}

    def account(name: str, scores: list[tuple[int, float]], answer: tuple[int, float] | None, **kw: object) -> None:
        acct = store.account(name=name, tier=kw.pop("tier", "low_touch"), **kw)
        admin = store.contact(acct, "admin")
        if scores:
            _history(db, acct, scores)
        if answer is not None:
            _answered(db, acct, admin, *answer)
        cases[name] = acct

    # Slid from 82 to 62 this week, then answered 7: the trough the playbook is for.
    account("dropped", [(7, 82.0), (1, 70.0), (0, 62.0)], (7, 2))
    # Tech touch, scored yesterday (the latest score at or before now), answered 8.
    account("tech-touch", [(1, 55.0)], (8, 1), tier="tech_touch")
    # Was below 70 last week, 74 today: the latest score decides.
    account("recovered", [(7, 58.0), (0, 74.0)], (7, 1))
    # Exactly 70 is not below 70.
    account("at-threshold", [(0, 70.0)], (8, 1))
    # A detractor is the nps-detractor playbook's, whatever the health.
    account("detractor", [(0, 40.0)], (4, 1))
    # A promoter with a low score is not a lukewarm answer.
    account("promoter", [(0, 45.0)], (9, 1))
    # The answer is older than the trigger's 7 days.
    account("old-answer", [(0, 50.0)], (8, 12))
    # No score at all matches no health condition.
    account("unscored", [], (7, 1))
    # High touch accounts have their CSM's own cadence.
    account("high-touch", [(0, 50.0)], (7, 1), tier="high_touch")
    account("churned", [(0, 50.0)], (7, 1), status="churned")

    proj = project(tmp_path, db_url, playbooks={PLAYBOOK: (REPO / "playbooks" / f"{PLAYBOOK}.yaml").read_text()})
    assert not (proj.settings.project_dir / "health.yaml").exists()  # the history above is what is read
    summaries = api.run_stages(db, proj, [PLAYBOOK], NOW, "run-1", OutboxChannel(tmp_path / "out"))
    assert summaries[PLAYBOOK].error is None
    assert summaries[PLAYBOOK].enrolled == 2

    with db.connect() as conn:
        enrolled = set(
            conn.execute(select(enrollments.c.subject_id).where(enrollments.c.playbook_id == PLAYBOOK)).scalars()
        )
        audit = conn.execute(
            select(audit_log.c.account_id, audit_log.c.reason, audit_log.c.detail).where(
                audit_log.c.playbook_id == PLAYBOOK, audit_log.c.decision == "enrolled"
            )
        ).all()
        steps = conn.execute(
            select(ledger.c.account_id, ledger.c.kind, ledger.c.step_id).where(ledger.c.playbook_id == PLAYBOOK)
        ).all()
    assert enrolled == {cases["dropped"], cases["tech-touch"]}
    assert {row.account_id for row in audit} == enrolled
    for row in audit:
        assert row.reason == "trigger_matched"
        assert "nps_response" in row.detail, row.detail
    # Each enrolled account gets the CSM's email to its admin and a call task, and nobody else does.
    assert sorted((r.account_id, r.kind, r.step_id) for r in steps) == sorted(
        [(a, "email", "check-in") for a in enrolled] + [(a, "task", "call") for a in enrolled]
    )

    # The next tick, a day later and with a new lukewarm answer, enrolls nobody twice (once per 90 days).
    _answered(db, cases["dropped"], store.contact(cases["dropped"], "champion"), 8, 0)
    later = api.run_stages(db, proj, [PLAYBOOK], NOW + timedelta(days=1), "run-2", OutboxChannel(tmp_path / "out"))
    assert later[PLAYBOOK].enrolled == 0
