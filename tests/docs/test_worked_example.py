"""The worked example of docs/playbooks.md, run as a project runs it: "trial ends in 7 days and
fewer than 3 active users in 14 days → email, wait 3 days, task", with the trial end declared as a
date trait in touchflow.yaml, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from engine.config import Settings
from engine.project import load_project
from tests.conftest import REPO
from tests.docs.test_playbook_docs import EXAMPLES
from tests.factories import Store
from tests.journeys.helpers import NOW, ledger_rows, run_tick, task_rows
from tests.language.helpers import add_events

PLAYBOOK = EXAMPLES["trial-ending-low-adoption"]


def trial_project(tmp_path: Path, db_url: str) -> Settings:
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "playbooks" / "trial-ending-low-adoption.yaml").write_text(PLAYBOOK, encoding="utf-8")
    (root / "touchflow.yaml").write_text("traits:\n  account: {trial_ends_on: date}\n", encoding="utf-8")
    return Settings(project_dir=root, database_url=db_url, outbox_dir=root / "outbox")


def account_with_logins(store: Store, trial_in_days: int, active: int) -> tuple[int, int]:
    """An account whose trial ends in `trial_in_days`, an admin, and `active` users who logged in."""
    ends = (NOW + timedelta(days=trial_in_days)).date().isoformat()
    account = store.account(traits={"trial_ends_on": ends})
    admin = store.contact(account, role="admin")
    for _ in range(active):
        add_events(store.engine, NOW, account, "login", [2, 9], contact_id=store.contact(account, role="user"))
    return account, admin


def test_trial_ending_with_few_active_users_gets_an_email_then_a_task(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    few, few_admin = account_with_logins(store, 7, active=2)
    nobody, nobody_admin = account_with_logins(store, 7, active=0)
    account_with_logins(store, 7, active=3)  # 3 active users: not "fewer than 3"
    account_with_logins(store, 20, active=0)  # the trial ends later
    broken = store.account(traits={"trial_ends_on": "next week"})  # not a date: that row only
    store.contact(broken, role="admin")
    project = load_project(trial_project(tmp_path, db_url))

    run_tick(db, project, NOW)
    emailed = {(r.account_id, r.contact_id, r.status) for r in ledger_rows(db, kind="email")}
    assert emailed == {(few, few_admin, "sent"), (nobody, nobody_admin, "sent")}
    assert task_rows(db) == []

    run_tick(db, project, NOW + timedelta(days=2))
    assert task_rows(db) == []  # still waiting: 3 days after the email

    run_tick(db, project, NOW + timedelta(days=3, hours=1))
    opened = sorted((r.account_id, r.priority) for r in task_rows(db))
    assert opened == sorted([(few, "high"), (nobody, "high")])
