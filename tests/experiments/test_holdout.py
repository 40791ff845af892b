"""A holdout subject receives none of the playbook's emails — the experiment's step and the
later ones (a follow-up) alike — and every one of them is tracked as held out."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from engine import tick
from engine.store.models import audit_log, ledger
from tests.factories import Store
from tests.policy.test_gate import NOW, TEMPLATE, make_project, new_account, plan

PLAYBOOK = f"""
id: held
name: Holdout across steps
trigger: {{date: contract_start, offset: 1d}}
steps:
  - id: first
    email:
      to: {{role: [admin]}}
      template: {TEMPLATE}
      experiment:
        arms: [{{id: send, weight: 50}}, {{id: holdout, weight: 50, holdout: true}}]
  - wait: 1d
  - id: follow-up
    email: {{to: {{role: [admin]}}, template: {TEMPLATE}}}
"""


def test_holdout_subjects_get_no_email_from_any_step(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj = make_project(tmp_path, db_url, {"held": PLAYBOOK})
    store = Store(db, NOW)
    for _ in range(40):
        store.contact(new_account(store, NOW))
    plan(db, proj, NOW, "held")
    plan(db, proj, NOW + timedelta(days=1, minutes=1), "held")
    with db.connect() as conn:
        rows = conn.execute(select(ledger).where(ledger.c.playbook_id == "held")).all()
        audits = conn.execute(select(audit_log.c.send_key, audit_log.c.reason)).all()
    first = {r.account_id: r for r in rows if r.step_id == "first"}
    follow = {r.account_id: r for r in rows if r.step_id == "follow-up"}
    held = {a for a, r in first.items() if r.variant == "holdout"}
    assert held and len(held) < len(first)  # both arms drawn from 40 subjects
    assert set(follow) == set(first)  # every journey reached the follow-up
    for account, row in follow.items():
        if account in held:
            assert (row.status, row.variant) == ("held_out", "holdout")
        else:
            assert (row.status, row.variant) == ("planned", None)
    held_keys = {r.send_key for r in rows if r.status == "held_out"}
    assert {k for k, reason in audits if reason == "holdout"} == held_keys
    claimed = set(tick.claim_batch(db, NOW + timedelta(days=2)))
    assert claimed and not claimed & {r.id for r in rows if r.status == "held_out"}  # never dispatched
