"""The playbooks acting on a stage: goal conversion of the enrollments sent to against the held out."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy import Engine, insert

from engine.funnel.effect import playbook_effects
from engine.store.models import enrollments, ledger

NOW = datetime(2026, 6, 15, 9)
_ids = itertools.count(1)


def enroll(db: Engine, playbook: str, status: str, held: bool) -> None:
    eid = next(_ids)
    row = {
        "id": eid, "playbook_id": playbook, "playbook_version": "v1", "subject_type": "account", "subject_id": eid,
        "account_id": eid, "trigger_key": "", "status": status, "step_index": 0, "enrolled_at": NOW,
        "updated_at": NOW, "run_id": "test",
    }  # fmt: skip
    with db.begin() as conn:
        conn.execute(insert(enrollments), [row])
        if held:
            conn.execute(
                insert(ledger),
                [{
                    "send_key": f"k{eid}", "kind": "email", "channel": "outbox", "status": "held_out",
                    "playbook_id": playbook, "playbook_version": "v1", "step_id": "hello", "enrollment_id": eid,
                    "account_id": eid, "payload": {}, "created_at": NOW, "updated_at": NOW,
                }],
            )  # fmt: skip


def test_treated_against_held_out_per_playbook(db: Engine) -> None:
    for status, held in [("converted", False), ("converted", False), ("active", False), ("exited", False),
                         ("converted", True), ("active", True)]:  # fmt: skip
        enroll(db, "activation-30d", status, held)
    enroll(db, "welcome", "converted", False)
    with db.connect() as conn:
        got = playbook_effects(conn, "activated", ["activation-30d", "never-ran"])
    first, second = got
    assert (first.enrolled, first.converted, first.holdout_enrolled, first.holdout_converted) == (4, 2, 2, 1)
    assert first.rate == 0.5 and first.holdout_rate == 0.5 and first.lift == 0.0
    assert first.as_dict()["stage"] == "activated"
    assert (second.playbook, second.enrolled, second.rate, second.lift) == ("never-ran", 0, None, None)
