"""Every account scored in one statement per day, on both databases: values, points, why, band."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from engine.health.compute import compute_day, latest_day, scores_on
from engine.store.models import health_history
from tests.factories import Store
from tests.health.helpers import NOW, add_events, model, sent_email


@pytest.fixture
def store(db: Engine) -> Store:
    return Store(db, NOW)


def _score(db: Engine, account_id: int) -> dict[str, Any]:
    with db.connect() as conn:
        (s,) = scores_on(conn, NOW.date(), account_id=account_id)
    return {"score": s.score, "band": s.band, "components": s.components}


def test_every_component_is_measured_and_explained(db: Engine, store: Store) -> None:
    acct = store.account(seats_purchased=10)
    people = [store.contact(acct, role) for role in ("champion", "exec_sponsor", "user", "user", "user", "user")]
    # 4 of 10 seats active in 30 days (one login of a 5th person 40 days ago does not count).
    add_events(db, acct, "login", [(1, people[0], {}), (2, people[1], {}), (3, people[2], {}), (3, people[3], {})])
    add_events(db, acct, "login", [(40, people[4], {})])
    add_events(db, acct, "support_ticket_opened", [(2, people[2], {"priority": "P1"}), (5, None, {"priority": "P3"})])
    add_events(db, acct, "nps_response", [(100, people[0], {"score": 3}), (10, people[0], {"score": 8})])
    add_events(db, acct, "feature_used", [(1, people[2], {"feature": f}) for f in ("api", "sso", "api", "alerts")])
    sent_email(db, acct, "k1", 5, opened=True)
    sent_email(db, acct, "k2", 6, opened=False)
    with db.begin() as conn:
        assert compute_day(conn, model(), NOW) == 1
    got = _score(db, acct)
    parts = got["components"]
    assert parts["adoption"] == {"value": 40.0, "points": 60.0, "why": ">= 30"}
    assert parts["support"] == {"value": 1.0, "points": 50.0, "why": "<= 2"}
    assert parts["survey"] == {"value": 8.0, "points": 70.0, "why": ">= 7"}
    assert parts["features"] == {"value": 3.0, "points": 100.0, "why": ">= 3"}
    assert parts["engagement"] == {"value": 50.0, "points": 100.0, "why": ">= 50"}
    assert parts["relationships"] == {"value": 2.0, "points": 100.0, "why": ">= 2"}
    # tech_touch weights: adoption 2, support 1, survey 1 (the rest 0) → (120 + 50 + 70) / 4.
    assert got["score"] == pytest.approx(60.0)
    assert got["band"] == "at_risk"


def test_weights_follow_the_tier_and_missing_values_get_their_points(db: Engine, store: Store) -> None:
    high = store.account(tier="high_touch", seats_purchased=0)
    with db.begin() as conn:
        compute_day(conn, model(), NOW)
    got = _score(db, high)
    assert got["components"]["adoption"] == {"value": None, "points": 10.0, "why": "no value"}
    assert got["components"]["survey"]["points"] == 50.0  # missing: no survey answered
    # high_touch: adoption 1, support 1, survey 1 → (10 + 100 + 50) / 3.
    assert got["score"] == pytest.approx(160 / 3)


def test_a_day_is_scored_once_and_churned_accounts_are_left_out(db: Engine, store: Store) -> None:
    live = store.account()
    gone = store.account(status="churned", churned_on=NOW.date() - timedelta(days=3))
    later = store.account(status="churned", churned_on=NOW.date() + timedelta(days=30))
    with db.begin() as conn:
        assert compute_day(conn, model(), NOW) == 2
        assert compute_day(conn, model(), NOW + timedelta(hours=5)) is None
        assert compute_day(conn, model(), NOW, replace=True) == 2
        ids = set(conn.execute(select(health_history.c.account_id)).scalars())
        assert latest_day(conn, NOW + timedelta(days=2)) == NOW.date()
    assert ids == {live, later}
    assert gone not in ids


def test_hostile_rows_cost_only_their_value(db: Engine, store: Store) -> None:
    acct = store.account()
    # A score that is not a number, and properties that are not an object.
    add_events(db, acct, "nps_response", [(1, None, {"score": "ten"})])
    add_events(db, acct, "support_ticket_opened", [(1, None, {"priority": ["P1"]})])
    other = store.account()
    with db.begin() as conn:
        assert compute_day(conn, model(), NOW) == 2
        assert conn.execute(select(func.count()).select_from(health_history)).scalar() == 2
    parts = _score(db, acct)["components"]
    assert parts["survey"]["value"] is None and parts["survey"]["points"] == 50.0
    assert parts["support"]["value"] == 0.0
    assert _score(db, other)["band"] in {"healthy", "at_risk", "unhealthy"}


def test_past_days_see_only_what_had_happened(db: Engine, store: Store) -> None:
    acct = store.account(seats_purchased=1)
    person = store.contact(acct)
    add_events(db, acct, "login", [(1, person, {})])
    with db.begin() as conn:
        compute_day(conn, model(), NOW - timedelta(days=10))
        compute_day(conn, model(), NOW)
        past = scores_on(conn, date(2026, 11, 13), account_id=acct)[0]
        today = scores_on(conn, NOW.date(), account_id=acct)[0]
    assert past.components["adoption"]["value"] == 0.0
    assert today.components["adoption"]["value"] == 100.0
