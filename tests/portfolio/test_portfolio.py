"""`touchflow portfolio` on SQLite and PostgreSQL: per CSM, accounts and ARR, health against the
team with the component that drags it, at-risk renewals, tasks by reason and open age."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from engine.cli import app
from engine.cli import portfolio as portfolio_cli
from engine.portfolio.report import portfolios
from tests.factories import Store
from tests.tasks.rows import health, task

NOW = datetime(2026, 6, 15, 9)
TODAY = NOW.date()


def comps(adoption: float, relationships: float, support: float) -> dict[str, object]:
    """Components as the health model writes them (points and value), and one as a bare number."""
    return {
        "adoption": {"points": adoption, "value": 50},
        "relationships": {"points": relationships},
        "support": support,
    }


@pytest.fixture
def seeded(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    store = Store(db, NOW)
    mina = store.csm(name="Mina Park", email="mina@cs.example")
    joe = store.csm(name="Joe Bloggs", email="joe@cs.example")
    store.csm(name="Ann Empty", email="ann@cs.example")
    soon = TODAY + timedelta(days=30)
    a1 = store.account(name="Acme", csm_id=mina, arr=10000.0, renewal_date=soon)
    a2 = store.account(name="Apex", csm_id=mina, arr=20000.0, renewal_date=soon)
    gone = store.account(name="Gone", csm_id=mina, arr=99000.0, status="churned", churned_on=TODAY)
    b1 = store.account(name="Beta", csm_id=joe, arr=5000.0, renewal_date=TODAY + timedelta(days=200))
    b2 = store.account(name="Bolt", csm_id=joe, arr=5000.0, renewal_date=TODAY + timedelta(days=10))
    health(db, a1, TODAY - timedelta(days=7), 90, "healthy", comps(40, 30, 20))  # superseded
    health(db, a1, TODAY, 60, "at_risk", comps(30, 10, 20))
    health(db, a2, TODAY, 80, "healthy", comps(30, 30, 20))
    health(db, gone, TODAY, 10, "unhealthy", comps(0, 0, 10))
    health(db, b1, TODAY, 84, "healthy", comps(32, 32, 20))
    health(db, b2, TODAY - timedelta(days=1), 76, "healthy", comps(28, 28, 20))
    task(db, a1, mina, NOW - timedelta(days=10))
    task(db, a1, mina, NOW - timedelta(days=20), status="done", closed_at=NOW, outcome="resolved")
    task(db, a2, mina, NOW - timedelta(days=1), playbook_id="renewal-90d", step_id="call")
    return {"mina": mina, "joe": joe, "a1": a1}


def test_health_against_the_team_and_the_drag(db: Engine, seeded: dict[str, int]) -> None:
    with db.connect() as conn:
        got = {p.email: p for p in portfolios(conn, NOW)}
    mina, joe, ann = got["mina@cs.example"], got["joe@cs.example"], got["ann@cs.example"]
    assert (mina.accounts, mina.arr, mina.health, mina.vs_team) == (2, 30000.0, 70.0, -5.0)
    assert (mina.drag, mina.drag_points) == ("relationships", -5.0)
    assert mina.summary == "5 points below the team; the drag is relationships"
    assert (joe.health, joe.vs_team, joe.drag) == (80.0, 5.0, None)
    assert joe.summary == "5 points above the team"
    assert (ann.accounts, ann.health, ann.summary) == (0, None, "no health scores")
    assert [(r.account_id, r.band, r.score) for r in mina.at_risk_renewing] == [(seeded["a1"], "at_risk", 60.0)]
    assert joe.at_risk_renewing == ()


def test_tasks_by_reason_and_open_age(db: Engine, seeded: dict[str, int]) -> None:
    with db.connect() as conn:
        mina = next(p for p in portfolios(conn, NOW) if p.email == "mina@cs.example")
    assert (mina.tasks_opened, mina.tasks_closed, mina.tasks_open) == (3, 1, 2)
    assert (mina.open_age_max_days, mina.open_age_median_days) == (10, 5.5)
    assert [(r.reason, r.opened, r.closed) for r in mina.by_reason] == [
        ("renewal-90d/call", 1, 0),
        ("support-spike/alert-csm", 2, 1),
    ]


def test_unreadable_components_cost_only_that_row(db: Engine, seeded: dict[str, int]) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's json column refuses text that is not JSON")
    with db.begin() as conn:
        conn.execute(
            text("UPDATE health_history SET components = 'not json {' WHERE account_id = :a"), {"a": seeded["a1"]}
        )
    with db.connect() as conn:
        mina = next(p for p in portfolios(conn, NOW) if p.email == "mina@cs.example")
    assert mina.health == 70.0  # the score still counts
    assert mina.drag is None or mina.drag in {"adoption", "relationships", "support"}


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["portfolio", "--now", NOW.isoformat(), *args])


def test_cli_json_one_object_per_csm_and_csv(seeded: dict[str, int]) -> None:
    result = run("--format", "json")
    assert result.exit_code == 0, result.stderr
    objects = {o["csm"]: o for o in map(json.loads, result.stdout.splitlines())}
    assert set(objects) == {"ann@cs.example", "joe@cs.example", "mina@cs.example"}
    mina = objects["mina@cs.example"]
    assert mina["summary"] == "5 points below the team; the drag is relationships"
    assert mina["at_risk_renewing"][0]["name"] == "Acme"
    assert mina["by_reason"][1] == {"reason": "support-spike/alert-csm", "opened": 2, "closed": 1}
    result = run("--format", "csv", "--csm", "joe@cs.example")
    assert result.exit_code == 0, result.stderr
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert (row["csm"], row["accounts"], row["at_risk_renewing"]) == ("joe@cs.example", "2", "0")


def test_cli_table_fits_80_columns_with_the_detail_of_one_csm(
    seeded: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    console = Console(width=80, record=True, file=io.StringIO(), highlight=False, color_system=None)
    monkeypatch.setattr(portfolio_cli, "out", console)
    result = run("--csm", "Mina@cs.example")
    assert result.exit_code == 0, result.stderr
    printed = console.export_text()
    assert max(map(len, printed.splitlines())) <= 80, printed
    assert "5 points below the team; the drag is relationships" in printed
    assert "Acme" in printed and "support-spike/alert-csm" in printed
    assert "oldest 10d" in printed


def test_cli_unknown_csm_lists_the_valid_ones(seeded: dict[str, int]) -> None:
    result = run("--csm", "mina@cs.exmple")
    assert result.exit_code == 2
    assert "no CSM 'mina@cs.exmple' (did you mean 'mina@cs.example'?)" in result.stderr
    assert "ann@cs.example, joe@cs.example, mina@cs.example" in result.stderr
    assert "Traceback" not in result.stderr
