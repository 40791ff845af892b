"""Step conditions and branches: on data, and on engagement with an earlier email."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from tests.factories import Store
from tests.journeys.helpers import (
    NOW,
    audit,
    decisions,
    enrollment,
    ledger_rows,
    load,
    message_event,
    playbook,
    run_tick,
    steps_done,
)

GATED = playbook(
    "gated",
    """\
  - id: vip-call
    if: {tier: high_touch}
    task: {title: "VIP call with {{ account.name }}"}
  - id: everyone
    task: {title: "Check in with {{ account.name }}"}
""",
)
ROUTED = playbook(
    "routed",
    """\
  - id: route
    branch: {if: {tier: high_touch}, then: call, else: mail}
  - id: call
    task: {title: "Call {{ account.name }}"}
  - exit: called
  - id: mail
    email: {to: {role: [admin]}, template: welcome/hello}
""",
)


def test_step_condition_and_branch_on_data(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    gated_vip = store.account(name="Gated VIP", plan="gated", tier="high_touch")
    gated_std = store.account(name="Gated Std", plan="gated", tier="tech_touch")
    routed_vip = store.account(name="Routed VIP", plan="routed", tier="high_touch")
    routed_std = store.account(name="Routed Std", plan="routed", tier="tech_touch")
    for acc in (routed_vip, routed_std):
        store.contact(acc, "admin")
    proj = load(tmp_path, db_url, GATED, ROUTED)

    run_tick(db, proj, NOW)

    assert steps_done(db, gated_vip) == ["vip-call", "everyone"]
    assert steps_done(db, gated_std) == ["everyone"]
    assert decisions(db, account_id=gated_vip, decision="skipped") == []
    (skip,) = audit(db, account_id=gated_std, decision="skipped")
    assert (skip.reason, skip.step_id, skip.detail) == ("condition_false", "vip-call", "step condition does not hold")
    assert enrollment(db, gated_std).status == enrollment(db, gated_vip).status == "completed"

    assert steps_done(db, routed_vip) == ["call"]
    vip = enrollment(db, routed_vip)
    assert (vip.status, vip.outcome) == ("exited", "called")
    assert [(r.reason, r.detail) for r in audit(db, account_id=routed_vip, decision="branched")] == [
        ("branch", "condition holds: go to call")
    ]
    assert decisions(db, account_id=routed_vip, decision="exited") == [("exited", "exit_step", "exit-called")]
    assert steps_done(db, routed_std) == ["mail"]
    assert enrollment(db, routed_std).status == "completed"
    assert [r.detail for r in audit(db, account_id=routed_std, decision="branched")] == [
        "condition does not hold: go to mail"
    ]


ENGAGED = playbook(
    "engaged",
    """\
  - id: plan
    email: {to: {role: [admin]}, template: renewal/plan}
  - wait: 10d
  - id: check
    branch: {if: {engaged: {step: plan, with: clicked, within: 7d}}, then: thanks, else: nudge}
  - id: nudge
    task: {title: "Nudge {{ account.name }}"}
  - exit: not engaged
  - id: thanks
    task: {title: "Thank {{ account.name }}"}
""",
)


def test_branch_on_engagement_with_an_earlier_email(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    clicked = store.account(name="Clicked Co", plan="engaged")
    silent = store.account(name="Silent Co", plan="engaged")
    late = store.account(name="Late Co", plan="engaged")
    opened = store.account(name="Opened Co", plan="engaged")
    other_step = store.account(name="Other Co", plan="engaged")
    for acc in (clicked, silent, late, opened, other_step):
        store.contact(acc, "admin")
    proj = load(tmp_path, db_url, ENGAGED)

    assert run_tick(db, proj, NOW)["engaged"].emails == 5
    key = {r.account_id: r.send_key for r in ledger_rows(db, step_id="plan")}
    message_event(db, key[clicked], "delivered", NOW + timedelta(minutes=1))
    message_event(db, key[clicked], "click", NOW + timedelta(days=1))
    message_event(db, key[late], "click", NOW + timedelta(days=8))  # after `within: 7d`
    message_event(db, key[opened], "open", NOW + timedelta(days=1))  # opened is not clicked
    message_event(db, "some-other-send-key", "click", NOW + timedelta(days=1))

    assert run_tick(db, proj, NOW + timedelta(days=10) - timedelta(seconds=1))["engaged"].tasks == 0
    assert run_tick(db, proj, NOW + timedelta(days=10))["engaged"].tasks == 5

    assert steps_done(db, clicked) == ["plan", "thanks"]
    assert enrollment(db, clicked).status == "completed"
    for acc in (silent, late, opened, other_step):
        assert steps_done(db, acc) == ["plan", "nudge"]
        assert (enrollment(db, acc).status, enrollment(db, acc).outcome) == ("exited", "not engaged")
    assert [r.detail for r in audit(db, account_id=clicked, decision="branched")] == ["condition holds: go to thanks"]


BRANCH_WITH_IF = playbook(
    "branch-if",
    """\
  - id: route
    if: {tier: high_touch}
    branch: {if: {seats_purchased: {gte: 50}}, then: big, else: small}
  - id: unrouted
    task: {title: "Not routed"}
  - exit: not routed
  - id: small
    task: {title: "Small"}
  - exit: small
  - id: big
    task: {title: "Big"}
""",
)


def test_branch_step_with_its_own_if(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    high_small = store.account(name="High Small", plan="branch-if", tier="high_touch", seats_purchased=10)
    tech_big = store.account(name="Tech Big", plan="branch-if", tier="tech_touch", seats_purchased=100)
    proj = load(tmp_path, db_url, BRANCH_WITH_IF)

    run_tick(db, proj, NOW)

    # `if` holds (high touch) → the branch runs → fewer than 50 seats → small.
    assert steps_done(db, high_small) == ["small"]
    assert decisions(db, account_id=high_small, step_id="route") == [("branched", "branch", "route")]
    assert (enrollment(db, high_small).status, enrollment(db, high_small).outcome) == ("exited", "small")
    # `if` does not hold (tech touch) → the branch step is skipped → the next step, whatever the seats.
    assert steps_done(db, tech_big) == ["unrouted"]
    assert decisions(db, account_id=tech_big, step_id="route") == [("skipped", "condition_false", "route")]
    assert (enrollment(db, tech_big).status, enrollment(db, tech_big).outcome) == ("exited", "not routed")
