"""Playbook versions: enrollments in flight follow the declared policy when the file changes; a paused
playbook does not run and keeps its enrollments' state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from engine import tick
from engine.store.models import enrollments
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, enrollment, ledger_rows, load, run_tick, steps_done, task_rows
from tests.journeys.mailbox import received, repeats

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


NO_IDS = """\
  - email: {to: {role: [admin, champion]}, template: welcome/hello}
  - wait: 3d
  - email: {to: {role: [admin, champion]}, template: inactive/tips}
"""
FIRST_TASK = '  - task: {title: "Kick-off call"}\n'


def test_inserting_a_first_step_without_ids_sends_nothing_twice(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="versioned")
    people = [f"person{store.contact(acc, role)}@acme.example" for role in ("admin", "champion")]
    v1 = load(tmp_path, db_url, versioned(NO_IDS, "migrate", "next"))
    run_tick(db, v1, NOW)
    assert sorted(m.to for m in received(db, v1.settings.outbox_dir)) == people  # the welcome went out

    v2 = load(tmp_path, db_url, versioned(FIRST_TASK + NO_IDS, "migrate", "next"))  # every step moves down
    run_tick(db, v2, LATER)
    run_tick(db, v2, LATER + timedelta(days=3))

    mail = received(db, v2.settings.outbox_dir)
    assert repeats(mail) == {}  # actual: the journey restarted and the welcome went out twice
    assert sorted((m.to, m.template) for m in mail) == sorted(
        (p, t) for p in people for t in ("welcome/hello", "inactive/tips")
    )
    assert (enrollment(db, acc).status, task_rows(db)) == ("completed", [])  # the new first step is behind it


RENAMED_V1 = """\
  - id: hello
    email: {to: {role: [admin, champion]}, template: welcome/hello}
  - id: pause
    wait: 3d
  - id: bye
    email: {to: {role: [admin, champion]}, template: inactive/tips}
"""
RENAMED_V2 = RENAMED_V1.replace("id: hello", "id: hi").replace("id: pause", "id: rest").replace("id: bye", "id: ciao")


def test_an_email_already_sent_in_the_enrollment_is_skipped_whatever_its_step_id(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Every id renamed: nothing is shared, so `next` restarts the journey; the welcome is not sent
    again (audited), the rest of the journey goes on."""
    store = Store(db, NOW)
    acc = store.account(plan="versioned")
    contacts = [store.contact(acc, role) for role in ("admin", "champion")]
    run_tick(db, load(tmp_path, db_url, versioned(RENAMED_V1, "migrate", "next")), NOW)
    v2 = load(tmp_path, db_url, versioned(RENAMED_V2, "migrate", "next"))
    run_tick(db, v2, LATER)
    run_tick(db, v2, LATER + timedelta(days=3))

    mail = received(db, v2.settings.outbox_dir)
    assert repeats(mail) == {}  # actual: the welcome went out twice under its new id
    assert sorted((m.template, m.step_id) for m in mail) == [
        ("inactive/tips", "ciao"),
        ("inactive/tips", "ciao"),
        ("welcome/hello", "hello"),
        ("welcome/hello", "hello"),
    ]
    skipped = audit(db, decision="skipped")
    assert sorted((r.reason, r.step_id, r.contact_id) for r in skipped) == [
        ("already_sent_in_enrollment", "hi", c) for c in contacts
    ]
    assert all("'hello'" in r.detail and "welcome/hello" in r.detail for r in skipped)
    assert [r.status for r in ledger_rows(db, step_id="hi")] == ["skipped", "skipped"]
    assert enrollment(db, acc).status == "completed"


LADDER = """\
  - id: first
    email: {to: {role: [billing]}, template: billing/overdue}
  - id: pause
    wait: 3d
  - id: second
    email: {to: {role: [billing]}, template: billing/overdue}
"""


def test_a_playbook_that_repeats_an_email_on_purpose_still_sends_each_step(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Two steps with the same template are two messages: the guard counts steps, not templates."""
    store = Store(db, NOW)
    acc = store.account(plan="versioned")
    store.contact(acc, "billing")
    run_tick(db, load(tmp_path, db_url, versioned(LADDER, "migrate", "next")), NOW)
    v2 = load(tmp_path, db_url, versioned(FIRST_TASK + LADDER, "migrate", "next"))
    run_tick(db, v2, LATER)

    mail = received(db, v2.settings.outbox_dir)
    assert [m.step_id for m in mail] == ["first", "second"]
    assert list(repeats(mail).values()) == [2]
    assert enrollment(db, acc).status == "completed"


def test_a_journey_that_recorded_a_positional_default_id_keeps_its_place(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Journeys in flight from before default ids were derived from content recorded `email-3`;
    the old version, compiled today, still says which step that is."""
    store = Store(db, NOW)
    acc = store.account(plan="versioned")
    store.contact(acc, "admin")
    run_tick(db, load(tmp_path, db_url, versioned(NO_IDS, "migrate", "exit")), NOW)
    assert (enrollment(db, acc).step_index, enrollment(db, acc).step_id) == (2, "email-inactive-tips")
    with db.begin() as conn:
        conn.execute(update(enrollments).where(enrollments.c.account_id == acc).values(step_id="email-3"))

    v2 = load(tmp_path, db_url, versioned(FIRST_TASK + NO_IDS, "migrate", "exit"))
    run_tick(db, v2, LATER)

    e = enrollment(db, acc)
    assert (e.status, e.outcome) == ("completed", "all 4 steps done")  # actual: exited, step 'email-3' missing
    assert sorted(m.template for m in received(db, v2.settings.outbox_dir)) == ["inactive/tips", "welcome/hello"]
