"""How journeys end: an exit step, a goal reached (converted), an exit condition (exited)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, update

from engine.store.models import accounts
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, decisions, enrollment, load, playbook, run_tick, steps_done

EXIT_STEP = playbook(
    "exit-step",
    """\
  - id: first
    task: {title: "First"}
  - id: stop
    exit: not a fit
  - id: never
    task: {title: "Never"}
""",
)
EXIT_CONDITION = playbook(
    "exit-condition",
    """\
  - id: plan
    task: {title: "Plan"}
  - wait: 7d
  - id: chase
    task: {title: "Chase"}
""",
    head="exit: {status: churned}\n",
)


def test_exit_step_and_exit_condition(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    unfit = store.account(plan="exit-step")
    churner = store.account(name="Churner", plan="exit-condition")
    loyal = store.account(name="Loyal", plan="exit-condition")
    proj = load(tmp_path, db_url, EXIT_STEP, EXIT_CONDITION)

    assert run_tick(db, proj, NOW)["exit-step"].exited == 1
    e = enrollment(db, unfit)
    assert (e.status, e.outcome, e.ended_at, e.next_run_at, e.step_id) == ("exited", "not a fit", NOW, None, "stop")
    (exited,) = audit(db, account_id=unfit, decision="exited")
    assert (exited.reason, exited.detail) == ("exit_step", "not a fit")
    assert steps_done(db, unfit) == ["first"]

    with db.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.id == churner).values(status="churned"))
    later = NOW + timedelta(days=7)
    assert run_tick(db, proj, later)["exit-condition"].exited == 1
    e = enrollment(db, churner)
    assert (e.status, e.outcome, e.ended_at) == ("exited", "exit condition holds", later)
    assert decisions(db, account_id=churner, decision="exited") == [("exited", "exit_condition", None)]
    assert steps_done(db, churner) == ["plan"]
    assert (enrollment(db, loyal).status, steps_done(db, loyal)) == ("completed", ["plan", "chase"])

    run_tick(db, proj, NOW + timedelta(days=30))
    assert steps_done(db, unfit) == ["first"]  # an ended journey never resumes
    assert steps_done(db, churner) == ["plan"]


GOAL = playbook(
    "goal",
    """\
  - id: plan
    task: {title: "Plan"}
  - wait: 7d
  - id: chase
    task: {title: "Chase the signature"}
""",
    head="goal: {event: renewal_signed}\n",
)
GOAL_WITHIN = GOAL.replace("id: goal", "id: goal-within").replace("plan: goal}", "plan: goal-within}")
GOAL_WITHIN = GOAL_WITHIN.replace("goal: {event: renewal_signed}", "goal: {event: renewal_signed, within: 3d}")


def test_goal_reached_converts_before_the_next_step(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    signed = store.account(name="Signed", plan="goal")
    unsigned = store.account(name="Unsigned", plan="goal")
    before = store.account(name="Signed before entry", plan="goal")
    store.events(before, "renewal_signed", [1])
    in_time = store.account(name="In time", plan="goal-within")
    too_late = store.account(name="Too late", plan="goal-within")
    proj = load(tmp_path, db_url, GOAL, GOAL_WITHIN)

    first = run_tick(db, proj, NOW)
    assert (first["goal"].enrolled, first["goal"].converted, first["goal-within"].enrolled) == (3, 0, 2)
    store.events(signed, "renewal_signed", [-2])  # two days after entry
    store.events(unsigned, "renewal_started", [-2])  # another event
    store.events(in_time, "renewal_signed", [-2])
    store.events(too_late, "renewal_signed", [-5])  # after `within: 3d`

    later = NOW + timedelta(days=7)
    result = run_tick(db, proj, later)
    assert (result["goal"].converted, result["goal-within"].converted) == (1, 1)

    for acc in (signed, in_time):
        e = enrollment(db, acc)
        assert (e.status, e.outcome, e.ended_at) == ("converted", "renewal_signed reached", later)
        assert steps_done(db, acc) == ["plan"]  # the chase never runs
        assert decisions(db, account_id=acc, decision="converted") == [("converted", "goal_reached", None)]
    for acc in (unsigned, before, too_late):
        assert (enrollment(db, acc).status, steps_done(db, acc)) == ("completed", ["plan", "chase"])
