"""An exit step's audit row names the step, as the enrollment does."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from tests.factories import Store
from tests.journeys.helpers import NOW, audit, enrollment, load, playbook, run_tick

LEAVE = playbook(
    "leave",
    """\
  - id: first
    task: {title: "First"}
  - id: not-a-fit
    exit: not a fit
""",
)
LEAVE_AUTO = playbook("leave-auto", '  - task: {title: "First"}\n  - exit: not a fit\n')


def test_the_exit_steps_audit_row_names_the_step(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    named = store.account(plan="leave")
    auto = store.account(plan="leave-auto")
    run_tick(db, load(tmp_path, db_url, LEAVE, LEAVE_AUTO), NOW)

    for account in (named, auto):
        e = enrollment(db, account)
        (exited,) = audit(db, account_id=account, decision="exited")
        assert (e.status, exited.reason, exited.detail) == ("exited", "exit_step", "not a fit")
        assert exited.step_id == e.step_id  # actual: None
        assert e.step_id is not None
    assert enrollment(db, named).step_id == "not-a-fit"
