"""Only customers are scored: a day before an account's contract started is not one of its days.

An account scored before it was a customer has no activity yet, scores as unhealthy, and never
churns in the horizon after: counted in a backtest, it would make the model look worse than it is.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Engine, select

from engine.health.compute import compute_day
from engine.store.models import health_history
from tests.factories import Store
from tests.health.helpers import NOW, model


def _scored(db: Engine, day: date) -> set[int]:
    with db.connect() as conn:
        return set(
            conn.execute(select(health_history.c.account_id).where(health_history.c.computed_on == day)).scalars()
        )


def test_an_account_is_not_scored_before_its_contract_started(db: Engine) -> None:
    store = Store(db, NOW)
    old = store.account(contract_start=date(2025, 1, 1))
    starts_today = store.account(contract_start=NOW.date())
    signs_later = store.account(contract_start=NOW.date() + timedelta(days=20))
    earlier = NOW - timedelta(days=30)
    with db.begin() as conn:
        compute_day(conn, model(), NOW)
        compute_day(conn, model(), earlier)
    assert _scored(db, NOW.date()) == {old, starts_today}
    assert _scored(db, earlier.date()) == {old}
    assert signs_later not in _scored(db, NOW.date())
