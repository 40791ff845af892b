"""`touchflow health` on both databases: the table, one account explained, JSON lines (one object
per account: account_id, score, band, components name → points), `health compute` over past days,
and `health backtest --format json` (one object: auc, horizon_days, n, churn rate per band)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from engine.cli import app
from tests.factories import Store
from tests.health.helpers import MODEL, NOW


@pytest.fixture
def store(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Three accounts: one busy (every seat logs in every few days), one half idle (2 of 5 seats),
    one idle that churned 20 days ago; the test model beside touchflow.yaml."""
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    (tmp_path / "health.yaml").write_text(MODEL, encoding="utf-8")
    s = Store(db, NOW)
    busy = s.account(seats_purchased=2, tier="high_touch")
    idle = s.account(seats_purchased=5)
    gone = s.account(seats_purchased=10, status="churned", churned_on=NOW.date() - timedelta(days=20))
    for account in (busy, idle):
        for person in (s.contact(account), s.contact(account)):
            s.events(account, "login", [float(d) for d in range(0, 200, 3)], contact_id=person)
    return {"busy": busy, "idle": idle, "gone": gone}


def _cli(*args: str) -> Result:
    result = CliRunner().invoke(app, [*args, "--now", NOW.isoformat()])
    assert "Traceback" not in result.output
    return result


def test_scores_shown_explained_and_as_json(store: dict[str, int]) -> None:
    assert _cli("health").exit_code == 1  # nothing scored yet, said so
    computed = _cli("health", "compute")
    assert computed.exit_code == 0, computed.output
    assert computed.stdout == f"{NOW.date().isoformat()}: 2 accounts scored\n"  # the churned one is not

    table = _cli("health")
    assert table.exit_code == 0, table.output
    rows = table.stdout.splitlines()
    assert rows[0].split()[:3] == ["account", "score", "band"]
    # Lowest first: the half-idle account (adoption 60 points) before the busy one.
    assert [int(r.split()[0]) for r in rows[1:]] == [store["idle"], store["busy"]]

    lines = [json.loads(line) for line in _cli("health", "--format", "json").stdout.splitlines()]
    assert [r["account_id"] for r in lines] == [store["idle"], store["busy"]]
    busy = lines[1]
    assert {"account_id", "score", "band", "components"} <= set(busy)
    assert busy["components"]["adoption"] == 100 and busy["components"]["survey"] == 50  # no answer: missing
    # high_touch weights: adoption 1, support 1, survey 1 (the others 0) → (100 + 100 + 50) / 3
    assert busy["score"] == pytest.approx(round((100 + 100 + 50) / 3, 1)) and busy["band"] == "healthy"
    assert lines[0]["components"]["adoption"] == 60 and lines[0]["band"] == "at_risk"  # (2×60 + 100 + 50) / 4

    explained = _cli("health", "--account", str(store["busy"]))
    assert explained.exit_code == 0, explained.output
    text = explained.stdout
    assert f"account {store['busy']}" in text
    assert "value 100" in text and "(value >= 60)" in text  # adoption: 2 of 2 seats active
    assert "score:" in text and "healthy" in text
    missing = _cli("health", "--account", "999999")
    assert missing.exit_code == 1 and "account 999999 has no score" in missing.output


def test_compute_past_days_and_the_backtest_as_json(store: dict[str, int]) -> None:
    computed = _cli("health", "compute", "--days", "110", "--every", "10")
    assert computed.exit_code == 0, computed.output
    assert len(computed.stdout.splitlines()) == 12  # 11 past days and today

    result = _cli("health", "backtest", "--horizon", "90d", "--format", "json")
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    figures = json.loads(line)
    assert figures["horizon_days"] == 90 and figures["n"] > 0 and figures["churned"] > 0
    # Every day whose horizon has passed saw the churn ahead (days 110, 100, 90 before now), and the
    # account that churned scored lowest on each: ranked perfectly.
    assert figures["auc"] == 1.0
    assert set(figures["bands"]) <= {"healthy", "at_risk", "unhealthy"}
    assert all({"n", "churned", "rate", "low", "high"} <= set(b) for b in figures["bands"].values())
    assert figures["bands"]["unhealthy"]["churned"] == figures["churned"]

    table = _cli("health", "backtest", "--horizon", "90d")
    assert table.exit_code == 0 and "AUC 1.000" in table.stdout and "note:" in table.stdout
    bad = _cli("health", "backtest", "--horizon", "ninety")
    assert bad.exit_code == 2 and "--horizon" in bad.output
