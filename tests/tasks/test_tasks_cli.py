"""`touchflow tasks list|close` on SQLite and PostgreSQL: filters, formats, closing (audited),
and clean errors for an unknown CSM, an unknown task and a task already closed."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner, Result

from engine.cli import app
from engine.store.models import audit_log, tasks
from tests.factories import Store
from tests.tasks.rows import task

NOW = datetime(2026, 6, 15, 9)
DONE = {"status": "done", "closed_at": NOW - timedelta(days=15), "outcome": "resolved", "closed_by": "joe"}


@pytest.fixture
def seeded(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    store = Store(db, NOW)
    mina = store.csm(name="Mina Park", email="mina@cs.example")
    joe = store.csm(name="Joe Bloggs", email="joe@cs.example")
    acme = store.account(name="Acme", csm_id=mina)
    beta = store.account(name="Beta\nCorp", csm_id=joe)
    return {
        "mina": mina,
        "joe": joe,
        "old": task(db, acme, mina, NOW - timedelta(days=10), title="Call Acme\x1b[31m"),
        "new": task(db, acme, mina, NOW - timedelta(days=1), playbook_id="renewal-90d", step_id="call"),
        "joes": task(db, beta, joe, NOW - timedelta(days=3)),
        "done": task(db, beta, joe, NOW - timedelta(days=20), **DONE),
    }


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["tasks", *args])


def test_list_open_tasks_of_one_csm_as_json(seeded: dict[str, int]) -> None:
    result = run("list", "--csm", "MINA@cs.example", "--status", "open", "--format", "json", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.stderr
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["csm"], r["status"], r["age_days"]) for r in got] == [
        (seeded["old"], "mina@cs.example", "open", 10),
        (seeded["new"], "mina@cs.example", "open", 1),
    ]
    assert got[1]["playbook"] == "renewal-90d" and got[1]["step"] == "call"


def test_list_done_tasks_as_csv_with_who_closed_them(seeded: dict[str, int]) -> None:
    result = run("list", "--status", "done", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert (int(row["id"]), row["outcome"], row["closed_by"], row["age_days"]) == (
        seeded["done"],
        "resolved",
        "joe",
        "",
    )


def test_table_fits_80_columns_and_shows_hostile_titles_as_text(seeded: dict[str, int]) -> None:
    result = CliRunner().invoke(app, ["tasks", "list"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert str(seeded["joes"]) in result.stdout


def test_close_marks_done_and_audits(db: Engine, seeded: dict[str, int]) -> None:
    tid = seeded["old"]
    result = run("close", str(tid), "--outcome", "resolved", "--as", "mina", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.stderr
    assert f"closed task {tid}" in result.stdout
    with db.connect() as conn:
        row = conn.execute(select(tasks).where(tasks.c.id == tid)).one()
        audit = conn.execute(select(audit_log).where(audit_log.c.decision == "task_closed")).one()
    assert (row.status, row.outcome, row.closed_by, row.closed_at) == ("done", "resolved", "mina", NOW)
    assert (audit.playbook_id, audit.step_id, audit.account_id, audit.reason) == (
        "support-spike", "alert-csm", row.account_id, "closed_by_csm",
    )  # fmt: skip
    assert "resolved" in audit.detail and "mina" in audit.detail
    again = run("close", str(tid), "--outcome", "resolved")
    assert again.exit_code == 1
    assert f"task {tid} is already done" in again.stderr


def test_unknown_task_and_unknown_csm_are_errors_without_traceback(seeded: dict[str, int]) -> None:
    missing = run("close", "999999", "--outcome", "resolved")
    assert missing.exit_code == 2
    assert "no task 999999" in missing.stderr
    nobody = run("list", "--csm", "mina@cs.exampel")
    assert nobody.exit_code == 2
    assert "no CSM 'mina@cs.exampel'" in nobody.stderr
    assert "joe@cs.example, mina@cs.example" in nobody.stderr
    bad = run("close", str(seeded["new"]), "--outcome", "x" * 41)
    assert bad.exit_code == 2
    assert "--outcome" in bad.stderr
    assert "Traceback" not in missing.stderr + nobody.stderr + bad.stderr


def test_a_title_that_looks_like_markup_is_printed_as_written(db: Engine, seeded: dict[str, int]) -> None:
    store = Store(db, NOW)
    task(db, store.account(name="x"), seeded["mina"], NOW, title="Call [/bogus] about [red]renewal")
    result = CliRunner().invoke(app, ["tasks", "list", "--status", "open"], terminal_width=200)
    assert result.exit_code == 0, result.stderr or repr(result.exception)
    assert "Call [/bogus] about [red]renewal" in result.stdout
