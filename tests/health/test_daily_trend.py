"""`daily_trend` on SQLite and PostgreSQL: per scored day in the span, the mean score and each
band's count; unscored days absent, the span's edges exact, days outside it left out."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, insert

from engine.health.compute import DayBands, daily_trend
from engine.store.models import health_history

LAST = date(2026, 11, 23)


def _scores(db: Engine, day: date, rows: list[tuple[float, str]]) -> None:
    with db.begin() as conn:
        conn.execute(
            insert(health_history),
            [
                {"account_id": i + 1, "computed_on": day, "score": score, "band": band, "components": {}}
                for i, (score, band) in enumerate(rows)
            ],
        )


def test_each_scored_day_has_its_mean_and_band_counts(db: Engine) -> None:
    _scores(db, LAST, [(80.0, "healthy"), (60.0, "at_risk"), (40.0, "unhealthy"), (90.0, "healthy")])
    _scores(db, LAST - timedelta(days=2), [(70.0, "healthy"), (50.0, "at_risk")])  # the day before: not scored
    _scores(db, LAST - timedelta(days=5), [(10.0, "unhealthy")])  # outside a 5-day span
    _scores(db, LAST + timedelta(days=1), [(99.0, "healthy")])  # after `last`: never shown
    with db.connect() as conn:
        got = daily_trend(conn, LAST, 5)
    assert [d.day for d in got] == [LAST - timedelta(days=2), LAST]
    assert got[0] == DayBands(LAST - timedelta(days=2), 60.0, {"healthy": 1, "at_risk": 1})
    assert got[1].mean == pytest.approx(67.5)
    assert got[1].bands == {"healthy": 2, "at_risk": 1, "unhealthy": 1}


def test_the_span_counts_back_from_the_last_day_inclusive(db: Engine) -> None:
    for back in range(4):
        _scores(db, LAST - timedelta(days=back), [(50.0 + back, "at_risk")])
    with db.connect() as conn:
        assert [d.day for d in daily_trend(conn, LAST, 1)] == [LAST]
        assert [d.mean for d in daily_trend(conn, LAST, 3)] == [52.0, 51.0, 50.0]
        assert len(daily_trend(conn, LAST, 30)) == 4
        assert daily_trend(conn, LAST - timedelta(days=10), 5) == []
