"""Advancing twice plans nothing twice: at the same `now`, and from two overlapping connections."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from engine import tick
from engine.plan import AdvanceResult, advance, evaluate
from engine.plan import driver as advance_module
from engine.store.models import accounts, audit_log, contacts, enrollments, ledger
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, enrollment, ledger_rows, load, playbook

JOURNEY = playbook(
    "twice",
    """\
  - id: hello
    email: {to: {role: [admin, champion]}, template: welcome/hello}
  - id: call
    task: {title: "Call {{ account.name }}"}
  - wait: 1d
  - id: follow-up
    task: {title: "Follow up"}
""",
)


def _state(engine: Engine) -> tuple[list[Any], list[Any], list[Any]]:
    with engine.connect() as conn:
        return (
            list(conn.execute(select(enrollments).order_by(enrollments.c.id))),
            list(conn.execute(select(ledger).order_by(ledger.c.id))),
            list(conn.execute(select(audit_log).order_by(audit_log.c.id))),
        )


def test_advancing_again_at_the_same_now_plans_nothing(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    acc = store.account(plan="twice")
    store.contact(acc, "admin")
    store.contact(acc, "champion")
    proj = load(tmp_path, db_url, JOURNEY)
    (compiled,) = proj.playbooks

    first = tick.evaluate_and_advance(db, proj, "twice", NOW, "run-1", "outbox")
    assert first.enrolled == 1
    after_first = _state(db)
    assert len(after_first[1]) == 3  # two emails and a task

    again = tick.evaluate_and_advance(db, proj, "twice", NOW, "run-1", "outbox")  # e.g. a retried task
    assert (again.enrolled, again.skipped, again.exited) == (0, 0, 0)
    with db.begin() as conn:
        assert advance(conn, compiled, NOW, "run-2", "outbox", proj.versions) == AdvanceResult()
    assert _state(db) == after_first

    keys = [r.send_key for r in ledger_rows(db)]
    assert len(set(keys)) == len(keys)
    assert Counter((r.decision, r.step_id) for r in audit(db)) == Counter(
        {("enrolled", None): 1, ("waiting", "wait-1d"): 1}
    )
    e = enrollment(db, acc)
    assert (e.step_id, e.next_run_at) == ("follow-up", NOW + timedelta(days=1))


def test_a_rerun_that_enrolls_someone_new_audits_earlier_entries_once(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    early = store.account(plan="twice")
    proj = load(tmp_path, db_url, JOURNEY)
    tick.evaluate_and_advance(db, proj, "twice", NOW, "run-1", "outbox")
    late = store.account(plan="twice")  # the customer store changed before the retry
    tick.evaluate_and_advance(db, proj, "twice", NOW, "run-1", "outbox")

    assert len(audit(db, account_id=late, decision="enrolled")) == 1
    assert len(audit(db, account_id=early, decision="enrolled")) == 1  # actual: 2


OVERLAP = playbook(
    "overlap",
    """\
  - id: hello
    email: {to: {role: [admin]}, template: welcome/hello}
  - id: call
    task: {title: "Call {{ account.name }}"}
  - wait: 1d
  - id: follow-up
    task: {title: "Follow up"}
""",
)
MANY = 300


def test_overlapping_advances_on_postgresql(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("row locks (SKIP LOCKED) are PostgreSQL's; SQLite serialises writers")
    monkeypatch.setattr(advance_module, "BATCH_SIZE", 20)  # many batches each: the two runs interleave
    with db.begin() as conn:
        first = conn.execute(select(func.coalesce(func.max(accounts.c.id), 0))).scalar_one() + 1_000_000
        ids = list(range(first, first + MANY))
        conn.execute(
            insert(accounts),
            [
                {
                    "id": i,
                    "name": f"Account {i}",
                    "tier": "tech_touch",
                    "plan": "overlap",
                    "arr": 1000.0,
                    "seats_purchased": 5,
                    "lifecycle_stage": "adoption",
                    "contract_start": date(2025, 1, 1),
                    "renewal_date": date(2027, 1, 1),
                    "status": "active",
                    "timezone": "UTC",
                    "locale": "en",
                    "traits": {},
                }
                for i in ids
            ],
        )
        conn.execute(
            insert(contacts),
            [
                {"id": i, "account_id": i, "email": f"admin{i}@example.com", "name": "Admin", "role": "admin"}
                for i in ids
            ],
        )
    proj = load(tmp_path, db_url, OVERLAP)
    (compiled,) = proj.playbooks
    with db.begin() as conn:
        assert evaluate(conn, compiled, NOW, "enroll").enrolled == MANY

    start = threading.Barrier(2)
    results: list[AdvanceResult] = []
    errors: list[BaseException] = []

    def worker(run_id: str) -> None:
        try:
            with db.begin() as conn:
                start.wait(timeout=10)
                results.append(advance(conn, compiled, NOW, run_id, "outbox", proj.versions))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"run-{n}",)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(r.emails_planned for r in results) == MANY
    assert sum(r.tasks_planned for r in results) == MANY
    assert sum(r.waiting for r in results) == MANY

    with db.connect() as conn:
        moved = Counter(conn.execute(select(enrollments.c.step_id, enrollments.c.next_run_at)).all())
        per_step = Counter(conn.execute(select(ledger.c.enrollment_id, ledger.c.step_id, ledger.c.contact_id)).all())
        waiting = Counter(
            conn.execute(select(audit_log.c.enrollment_id).where(audit_log.c.decision == "waiting")).scalars()
        )
    assert moved == {("follow-up", NOW + timedelta(days=1)): MANY}
    assert len(per_step) == 2 * MANY and set(per_step.values()) == {1}
    assert len(waiting) == MANY and set(waiting.values()) == {1}

    with db.begin() as conn:  # and a third, late advance finds nothing due
        assert advance(conn, compiled, NOW, "run-3", "outbox", proj.versions) == AdvanceResult()


def test_an_advance_skips_what_another_holds_on_postgresql(db: Engine, db_url: str, tmp_path: Path) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("row locks (SKIP LOCKED) are PostgreSQL's")
    store = Store(db, NOW)
    for _ in range(5):
        store.account(plan="overlap")
    proj = load(tmp_path, db_url, OVERLAP)
    (compiled,) = proj.playbooks
    with db.begin() as conn:
        evaluate(conn, compiled, NOW, "enroll")

    holding, other = db.connect(), db.connect()
    try:
        with holding.begin():
            assert advance(holding, compiled, NOW, "run-1", "outbox").tasks_planned == 5
            # Not committed yet: a second advance neither waits for the locks nor plans the same steps.
            with other.begin():
                assert advance(other, compiled, NOW, "run-2", "outbox") == AdvanceResult()
    finally:
        holding.close()
        other.close()
    assert len(ledger_rows(db)) == 5
    assert {r.run_id for r in audit(db, decision="waiting")} == {"run-1"}
