"""`touchflow run --dispatchers N`: the tick's dispatch in N processes on PostgreSQL, refused on
SQLite (one writer) and in a dry run, before anything is written or Prefect starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from engine.store.models import ledger
from engine.tick import last_tick
from tests.cli.test_commands import NOW, PLAIN, PREFECT_DEFAULTS, PROMOTE, invoke
from tests.factories import Store
from tests.factories import project as make_project

TOUCHFLOW = Path(sys.executable).parent / "touchflow"


@pytest.fixture
def root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project of tests/cli/test_commands.py on a migrated store: the cwd and the project dir."""
    directory = make_project(tmp_path, db_url, playbooks={"promote": PROMOTE, "plain": PLAIN}).settings.project_dir
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(directory))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TOUCHFLOW_OUTBOX", str(directory / "outbox"))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))  # `run` sets these with setdefault
    for name, value in PREFECT_DEFAULTS.items():
        monkeypatch.setenv(name, os.environ.get(name, value))
    monkeypatch.chdir(directory)
    return directory


def _ledger(db: Engine) -> dict[str, int]:
    with db.connect() as conn:
        return dict(conn.execute(select(ledger.c.status, func.count()).group_by(ledger.c.status)).all())  # type: ignore[arg-type]


def test_sqlite_refuses_dispatcher_processes_and_writes_nothing(root: Path, db: Engine) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("SQLite's refusal")
    result = invoke("run", "--now", NOW, "--dispatchers", "2")
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert "error: --dispatchers 2 needs a PostgreSQL store: SQLite has one writer" in said
    assert last_tick(db) is None and _ledger(db) == {}


def test_a_dry_run_refuses_dispatcher_processes(root: Path) -> None:
    result = invoke("run", "--now", NOW, "--dry-run", "--dispatchers", "3")
    assert result.exit_code == 2, result.output
    assert "--dispatchers applies to a live tick; a dry run sends nothing" in result.stderr


def test_dispatchers_must_be_at_least_one(root: Path) -> None:
    result = invoke("run", "--now", NOW, "--dispatchers", "0")
    assert result.exit_code == 2
    assert "--dispatchers" in result.output and "1" in result.output


@pytest.mark.parametrize("asked", ["33", "99999999999999999999"])
def test_dispatchers_are_bounded(root: Path, db: Engine, asked: str) -> None:
    """A typo (one more zero) must not start thousands of processes, each with its connections."""
    result = invoke("run", "--now", NOW, "--dispatchers", asked)
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "--dispatchers" in said and "32" in said
    assert last_tick(db) is None and _ledger(db) == {}


def test_postgresql_runs_the_tick_with_dispatcher_processes(root: Path, db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("dispatcher processes share a store on PostgreSQL")
    store = Store(db, datetime.fromisoformat(NOW))
    for n in range(6):  # `plain` greets each of them and opens a task; `promote` waits a day
        account = store.account(name=f"Login {n}")
        store.events(account, "login", [1.0], store.contact(account, "admin"))
    # A command of its own, as an operator runs it: the Prefect API child it starts (and the
    # settings pointing at it) must not outlive it in this process.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    done = subprocess.run(
        [str(TOUCHFLOW), "run", "--now", NOW, "--dispatchers", "2", "--json"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    emails = sum(row["emails"] for row in rows)
    assert emails == 6 and sum(row["tasks"] for row in rows) == 6, rows
    statuses = _ledger(db)
    assert statuses.get("sent", 0) == 12, statuses
    assert "claimed" not in statuses and "sending" not in statuses
    assert len(list((root / "outbox").glob("*.eml"))) == emails
