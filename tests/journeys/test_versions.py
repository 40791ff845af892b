"""Playbook versions: enrollments in flight follow the declared policy when the file changes; a paused
playbook does not run and keeps its enrollments' state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine import tick
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, enrollment, ledger_rows, load, run_tick, steps_done, task_rows

LATER = NOW + timedelta(days=3)
V1_STEPS = """\
  - id: first
    task: {title: "First"}
  - id: pause
    wait: 3d
  - id: second
    task: {title: "Second v1"}
"""
V2_TEXT = V1_STEPS.replace("Second v1", "Second v2")
V2_INSERTED = '  - id: extra\n    task: {title: "Extra"}\n' + V2_TEXT  # every step moves one place down
V2_REMOVED = V1_STEPS.replace('- id: second\n    task: {title: "Second v1"}', '- id: third\n    task: {title: "Third"}')


def versioned(steps: str, on_change: str, on_missing_step: str = "exit", status: str = "active") -> str:
    return (
        f"id: versioned\nname: Versioned\nstatus: {status}\ntrigger: {{plan: versioned}}\n"
        f"versions: {{on_change: {on_change}, on_missing_step: {on_missing_step}}}\nsteps:\n{steps}"
    )


@pytest.mark.parametrize(
    ("on_change", "on_missing_step", "v2_steps", "status", "outcome", "titles"),
    [
        ("continue", "exit", V2_TEXT, "completed", "all 3 steps done", ["First", "Second v1"]),
        ("migrate", "exit", V2_INSERTED, "completed", "all 4 steps done", ["First", "Second v2"]),
        ("migrate", "exit", V2_REMOVED, "exited", "step 'second' is not in version {v2}", ["First"]),
        ("migrate", "next", V2_REMOVED, "completed", "all 3 steps done", ["First", "Third"]),
        ("exit", "exit", V2_TEXT, "exited", "playbook changed from {v1} to {v2}", ["First"]),
    ],
    ids=["continue", "migrate-by-id", "migrate-removed-exit", "migrate-removed-next", "exit"],
)
def test_enrollment_in_flight_follows_the_version_policy(
    db: Engine,
    db_url: str,
    tmp_path: Path,
    on_change: str,
    on_missing_step: str,
    v2_steps: str,
    status: str,
    outcome: str,
    titles: list[str],
) -> None:
    acc = Store(db, NOW).account(plan="versioned")
    v1_project = load(tmp_path, db_url, versioned(V1_STEPS, on_change, on_missing_step))
    run_tick(db, v1_project, NOW)
    (v1,) = v1_project.playbooks
    assert (enrollment(db, acc).playbook_version, enrollment(db, acc).step_id) == (v1.version, "second")

    v2_project = load(tmp_path, db_url, versioned(v2_steps, on_change, on_missing_step))  # the file is edited
    (v2,) = v2_project.playbooks
    assert v2.version != v1.version
    assert run_tick(db, v2_project, LATER - timedelta(minutes=1))["versioned"].tasks == 0  # not due: untouched
    assert enrollment(db, acc).playbook_version == v1.version
    run_tick(db, v2_project, LATER)

    e = enrollment(db, acc)
    assert (e.status, e.outcome) == (status, outcome.format(v1=v1.version, v2=v2.version))
    assert [t.title for t in task_rows(db)] == titles
    assert e.playbook_version == (v1.version if on_change == "continue" else v2.version)
    if on_change == "continue":
        assert [r.playbook_version for r in ledger_rows(db)] == [v1.version, v1.version]
    if status == "exited":
        reason = "version_changed" if on_change == "exit" else "step_removed"
        assert [(r.reason, r.playbook_version) for r in audit(db, decision="exited")] == [(reason, v2.version)]


@pytest.mark.parametrize(
    "condition",
    [
        "{tier: {in: [tech_touch, low_touch]}}",  # an operator: every operator comes back as set
        "{contract_start: 2025-01-01}",  # a date literal: comes back as text
    ],
    ids=["operator", "date-literal"],
)
def test_continue_on_the_old_version_evaluates_its_conditions(
    db: Engine, db_url: str, tmp_path: Path, condition: str
) -> None:
    acc = Store(db, NOW).account(plan="versioned", tier="tech_touch")  # contract_start 2025-01-01
    v1_steps = V1_STEPS.replace("  - id: second\n", f"  - id: second\n    if: {condition}\n")
    assert "if:" in v1_steps
    v1_project = load(tmp_path, db_url, versioned(v1_steps, "continue"))
    run_tick(db, v1_project, NOW)

    v2_project = load(tmp_path, db_url, versioned(v1_steps.replace("Second v1", "Second v2"), "continue"))
    run_tick(db, v2_project, LATER)  # actual: raises compiling / running the v1 step condition

    assert (enrollment(db, acc).status, [t.title for t in task_rows(db)]) == ("completed", ["First", "Second v1"])


def test_paused_playbook_does_not_run_and_keeps_its_state(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="versioned")
    active = load(tmp_path, db_url, versioned(V1_STEPS, "exit"))
    tick.evaluate_and_advance(db, active, "versioned", NOW, "planned-only", "outbox")  # paused before dispatch
    before = enrollment(db, acc)

    paused = load(tmp_path, db_url, versioned(V1_STEPS, "exit", status="paused"))
    assert paused.active() == []
    assert [p.id for p in paused.active("versioned")] == ["versioned"]  # still selectable by name
    newcomer = store.account(plan="versioned")
    run_tick(db, paused, LATER + timedelta(days=10))
    assert enrollment(db, acc) == before
    assert [(r.step_id, r.status) for r in ledger_rows(db)] == [("first", "planned")]  # its messages wait too
    assert task_rows(db) == []
    assert ledger_rows(db, account_id=newcomer) == []
    assert audit(db, account_id=newcomer) == []

    resumed = load(tmp_path, db_url, versioned(V1_STEPS, "exit"))  # same content: same version
    assert resumed.playbooks[0].version == active.playbooks[0].version
    run_tick(db, resumed, LATER + timedelta(days=11))
    assert (enrollment(db, acc).status, steps_done(db, acc)) == ("completed", ["first", "second"])
    assert steps_done(db, newcomer) == ["first"]
