"""The backtest ranks scored days against the churn that followed within the horizon."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert

from engine.experiments.stats import wilson_interval
from engine.health.backtest import backtest
from engine.store.models import health_history
from tests.factories import Store
from tests.health.helpers import NOW


def test_auc_and_churn_per_band(db: Engine) -> None:
    store = Store(db, NOW)
    day = NOW.date()
    a = store.account(status="churned", churned_on=day - timedelta(days=180))
    b = store.account()
    c = store.account(status="churned", churned_on=day - timedelta(days=100))
    rows = [
        (a, 200, 30.0, "unhealthy"),  # churned 20 days later: a churn
        (b, 200, 80.0, "healthy"),
        (c, 200, 50.0, "at_risk"),  # churned 100 days later: beyond 90 days
        (b, 150, 82.0, "healthy"),
        (c, 150, 81.0, "healthy"),  # churned 50 days later: a churn the score missed
        (b, 10, 10.0, "unhealthy"),  # its horizon has not passed: not counted
    ]
    with db.begin() as conn:
        conn.execute(
            insert(health_history),
            [
                {"account_id": i, "computed_on": day - timedelta(days=d), "score": s, "band": band, "components": {}}
                for i, d, s, band in rows
            ],
        )
        got = backtest(conn, NOW, timedelta(days=90), ["healthy", "at_risk", "unhealthy"])
    # Churned: a@30, c@81; retained: b@80, c@50, b@82. a is below all 3, c@81 below only b@82.
    assert got.auc == pytest.approx(4 / 6)
    assert got.auc_low is not None and got.auc_high is not None and got.auc_low < 4 / 6 < got.auc_high
    assert (got.n, got.churned, got.days, got.horizon_days) == (5, 2, 2, 90)
    bands = {r.band: (r.n, r.churned) for r in got.bands}
    assert bands == {"healthy": (3, 1), "at_risk": (1, 0), "unhealthy": (1, 1)}
    healthy = got.bands[0]
    assert (healthy.low, healthy.high) == pytest.approx(wilson_interval(1, 3))
    out = got.as_dict()
    assert set(out) >= {"auc", "horizon_days", "n", "bands"} and out["bands"]["healthy"]["rate"] == pytest.approx(
        0.3333
    )


def test_no_history_says_so(db: Engine) -> None:
    with db.connect() as conn:
        got = backtest(conn, NOW, timedelta(days=90))
    assert (got.n, got.auc, got.bands) == (0, None, [])
