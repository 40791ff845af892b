"""The tick flow with `dispatchers`: its dispatch task runs N processes and logs each one's counts.

PostgreSQL: one `dispatch-processes` task instead of a task per batch, the summary rows as a
one-process tick gives them, every message once in the outbox, nothing left claimed, and the
run's log naming every process with what it sent. SQLite: the run dispatches in one process
and says why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from benchmarks.dispatch import NOW, build_store
from engine.store.models import ledger
from tests.dispatch_scenario import TWO_PLAYBOOKS
from tests.factories import project
from tests.flows.test_tick_observable import _run_log

pytestmark = pytest.mark.prefect

CONTACTS = 200
PLAYBOOKS = TWO_PLAYBOOKS


@contextmanager
def info_logs() -> Iterator[None]:
    """The run's INFO lines (the suite runs Prefect at WARNING; an operator's workers at INFO)."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger in loggers:
            logger.setLevel(logging.NOTSET)


def _store(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    build_store(db, CONTACTS)
    proj = project(tmp_path, db_url, playbooks=PLAYBOOKS)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(proj.settings.project_dir))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TOUCHFLOW_OUTBOX", str(proj.settings.outbox_dir))
    return proj.settings.outbox_dir


def test_the_flow_dispatches_in_n_processes_and_logs_each(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("dispatcher processes share a store on PostgreSQL")
    from flows.tick import tick

    outbox = _store(db, db_url, tmp_path, monkeypatch)
    with info_logs():
        state = tick(now=NOW, dispatchers=2, return_state=True)
    rows = {row["playbook"]: row for row in state.result()}

    assert set(rows) == set(PLAYBOOKS)
    assert all(row["emails"] == CONTACTS and row["error"] is None for row in rows.values()), rows
    files = list(outbox.glob("*.eml"))
    assert len(files) == sum(row["emails"] for row in rows.values()) == 2 * CONTACTS
    with db.connect() as conn:
        statuses = dict(conn.execute(select(ledger.c.status, func.count()).group_by(ledger.c.status)).all())  # type: ignore[arg-type]
        channels = set(conn.execute(select(ledger.c.channel).distinct()).scalars())
    assert statuses == {"sent": 2 * CONTACTS} and channels == {"outbox"}

    said = _run_log(state.state_details.flow_run_id)
    assert f"dispatch-processes: emails first={CONTACTS}, second={CONTACTS}" in said
    assert "dispatch-batch" not in said
    per_process = [line for line in said.splitlines() if line.startswith("dispatcher ")]
    assert [line.split(":")[0] for line in per_process] == ["dispatcher 1", "dispatcher 2"], said
    logged = sum(int(n) for line in per_process for n in re.findall(r"emails=(\d+)", line))
    assert logged == 2 * CONTACTS, per_process


def test_on_sqlite_the_flow_dispatches_in_one_process_and_says_why(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("the one-writer fallback is SQLite's")
    from flows.tick import tick

    outbox = _store(db, db_url, tmp_path, monkeypatch)
    state = tick(now=NOW, dispatchers=3, return_state=True)
    rows = state.result()
    assert sum(row["emails"] for row in rows) == 2 * CONTACTS == len(list(outbox.glob("*.eml")))
    said = _run_log(state.state_details.flow_run_id)  # a warning: logged at the suite's level too
    assert "3 dispatchers asked for; the store has one writer (SQLite): dispatching in one process" in said
