"""Update steps: columns, traits and tags change in the store, are audited, and later conditions see them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from engine.problems import ProblemsFound
from engine.store.models import accounts, contacts
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, decisions, enrollment, load, playbook, run_tick, steps_done

UPDATE = playbook(
    "update",
    """\
  - id: stage
    update:
      set: {lifecycle_stage: renewal, traits.health_call: done, traits.score: 7}
      clear: [traits.legacy]
      tag: [vip, renewal]
      untag: [trial]
  - wait: 1d
  - id: staged-call
    if: {all: [{lifecycle_stage: renewal}, {traits.health_call: done}, {traits.legacy: {exists: false}}]}
    task: {title: "Renewal call with {{ account.name }}"}
  - id: downgrade
    update: {set: {lifecycle_stage: adoption}, untag: [vip]}
  - wait: 1d
  - id: vip-only
    if: {traits.health_call: done, lifecycle_stage: renewal}
    task: {title: "Never: the stage is back to adoption"}
""",
)


def _account(engine: Engine, account_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(accounts).where(accounts.c.id == account_id)).one()


def test_update_step_changes_the_account_for_later_ticks(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    traits = {"legacy": "v1", "tags": ["trial", "beta"], "region": "apac"}
    acc = store.account(name="Update Co", plan="update", lifecycle_stage="adoption", traits=traits)
    untouched = store.account(name="Bystander", plan="starter", traits={"tags": ["trial"]})
    proj = load(tmp_path, db_url, UPDATE)

    run_tick(db, proj, NOW)
    row = _account(db, acc)
    assert row.lifecycle_stage == "renewal"
    assert row.traits == {"region": "apac", "health_call": "done", "score": 7, "tags": ["beta", "vip", "renewal"]}
    (updated,) = audit(db, decision="updated")
    assert (updated.reason, updated.step_id, updated.account_id) == ("update_step", "stage", acc)
    assert updated.detail == (
        "account: lifecycle_stage='renewal', traits.health_call='done', traits.score=7, traits.legacy cleared, "
        "tag +vip, tag +renewal, tag -trial"
    )
    assert _account(db, untouched).traits == {"tags": ["trial"]}

    run_tick(db, proj, NOW + timedelta(days=1))
    assert steps_done(db, acc) == ["staged-call"]  # the condition saw the first update
    row = _account(db, acc)
    assert (row.lifecycle_stage, row.traits["tags"]) == ("adoption", ["beta", "renewal"])
    assert [r.step_id for r in audit(db, decision="updated")] == ["stage", "downgrade"]

    run_tick(db, proj, NOW + timedelta(days=2))
    assert steps_done(db, acc) == ["staged-call"]  # ... and the second one
    assert decisions(db, step_id="vip-only") == [("skipped", "condition_false", "vip-only")]
    assert enrollment(db, acc).status == "completed"


CONTACT_UPDATE = playbook(
    "contact-update",
    """\
  - update: {target: contact, set: {traits.onboarded: true, locale: ko}, tag: [champion-candidate]}
""",
    head="subject: contact\n",
)


def test_update_step_on_the_contact(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="contact-update", traits={"tags": ["keep"]})
    person = store.contact(acc, "admin", traits={"tags": ["x"]})
    proj = load(tmp_path, db_url, CONTACT_UPDATE)

    run_tick(db, proj, NOW)
    with db.connect() as conn:
        row = conn.execute(select(contacts).where(contacts.c.id == person)).one()
    assert (row.locale, row.traits) == ("ko", {"tags": ["x", "champion-candidate"], "onboarded": True})
    assert _account(db, acc).traits == {"tags": ["keep"]}


SAME_TICK_STEPS = """\
  - id: stage
    update: {set: {lifecycle_stage: renewal}}
  - id: after
    if: {lifecycle_stage: renewal}
    task: {title: "Renewal call"}
"""


@pytest.mark.parametrize(
    ("head", "steps", "done", "ended"),
    [
        # The step's `if` holds once the update is made: `after` runs and the journey completes.
        ("", SAME_TICK_STEPS, ["after"], ("completed", "all 2 steps done")),
        # Exits are checked before every step: the exit holds once the update is made, so `after` never runs.
        (
            "exit: {lifecycle_stage: renewal}\n",
            SAME_TICK_STEPS.replace("    if: {lifecycle_stage: renewal}\n", ""),
            [],
            ("exited", "exit condition holds"),
        ),
    ],
    ids=["step-if", "exit-condition"],
)
def test_condition_right_after_an_update_sees_the_new_value(
    db: Engine, db_url: str, tmp_path: Path, head: str, steps: str, done: list[str], ended: tuple[str, str]
) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="same-tick", lifecycle_stage="adoption")
    proj = load(tmp_path, db_url, playbook("same-tick", steps, head=head))

    run_tick(db, proj, NOW)

    assert _account(db, acc).lifecycle_stage == "renewal"
    assert steps_done(db, acc) == done
    row = enrollment(db, acc)
    assert (row.status, row.outcome) == ended


@pytest.mark.parametrize(
    ("step", "col", "message"),
    [
        ("update: {clear: [lifecycle_stage]}", 14, "'lifecycle_stage' cannot be empty; set it to a value instead"),
        (
            "update: {set: {traits.renewed_on: 2026-12-01}}",
            20,
            "traits hold JSON values: write the date as text, e.g. '2026-12-01'",
        ),
    ],
    ids=["clear-required-column", "date-in-traits"],
)
def test_update_the_store_cannot_hold_is_rejected_where_it_is_written(
    db_url: str, tmp_path: Path, step: str, col: int, message: str
) -> None:
    with pytest.raises(ProblemsFound) as found:
        load(tmp_path, db_url, playbook("broken-update", f"  - {step}\n  - task: {{title: After}}\n"))
    (problem,) = found.value.problems
    assert (Path(problem.path).name, problem.line, problem.col, problem.message) == (
        "broken-update.yaml",
        5,
        col,
        message,
    )


def test_a_date_written_as_text_goes_into_the_traits(db: Engine, db_url: str, tmp_path: Path) -> None:
    # What the message above suggests: quoted, the same date is a string trait and the tick runs.
    store = Store(db, NOW)
    acc = store.account(plan="dated-update", traits={"region": "emea"})
    other = store.account(plan="dated-update")
    steps = "  - update: {set: {traits.renewed_on: '2026-12-01'}}\n  - task: {title: After}\n"
    proj = load(tmp_path, db_url, playbook("dated-update", steps))

    run_tick(db, proj, NOW)

    assert _account(db, acc).traits == {"region": "emea", "renewed_on": "2026-12-01"}
    assert _account(db, other).traits == {"renewed_on": "2026-12-01"}
    assert steps_done(db, acc) == steps_done(db, other) == ["task-after"]
