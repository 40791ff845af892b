"""`touchflow bench health`: the hand-written floor scores the demo store exactly as the product
does, on both databases, and a model that differs from the floor is caught account by account."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from benchmarks.health import run
from demo.data import generate
from engine.health.load import load_health, load_health_text
from engine.store.models import accounts
from tests.conftest import REPO

NOW = datetime(2026, 11, 23, 9, 0)


def _build(engine: Engine, n: int, seed: int, at: datetime) -> Any:
    return generate(engine, accounts=n, seed=seed, now=at.replace(hour=0, minute=0))


def test_the_floor_scores_every_account_as_the_product_does(db: Engine) -> None:
    spec = load_health(REPO)
    assert spec is not None
    result = run(db, 400, 3, NOW, spec, _build, repeat=1)
    with db.connect() as conn:
        active = conn.execute(
            select(func.count()).select_from(accounts).where(accounts.c.status == "active")
        ).scalar_one()
    assert result.scored >= active and result.scored > 0
    assert (result.mismatched, result.examples) == (0, [])
    assert result.product_s > 0 and result.floor_s > 0
    # Reused the second time; a model that is not the floor's differs, and the accounts are named.
    text = (REPO / "health.yaml").read_text(encoding="utf-8").replace("weight: 10\n", "weight: 30\n", 1)
    changed = run(db, 400, 3, NOW, load_health_text(text), _build, repeat=1)
    assert changed.store_reused and changed.mismatched > 0
    assert {"account_id", "product_score", "floor_score"} <= set(changed.examples[0])


def test_the_command_prints_one_json_object(db_url: str, monkeypatch: Any) -> None:
    from engine.cli.main import app

    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["bench", "health", "--accounts", "150", "--db", db_url, "--repeat", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["mismatched"] == 0 and figures["accounts"] == 150 and figures["ratio"] > 0
