"""The demo store gives a health model something honest to measure, on SQLite and PostgreSQL.

Churners are drawn from causes (fading activity, support trouble, overdue billing, …) a model can
see before the churn, and the customers who stay are as active at any date of the year as they
are today — otherwise a backtest compares a churner's busy months with a stayer's quiet ones.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import date, datetime, timedelta
from statistics import median

import pytest
from sqlalchemy import Connection, Engine, select

from demo.data import generate
from engine.store.models import accounts, events

NOW = datetime(2026, 11, 23)
PRODUCT = ("login", "page_view", "feature_used")


@pytest.fixture
def demo(db: Engine) -> Engine:
    generate(db, accounts=600, seed=7, now=NOW)
    return db


def _product_days(conn: Connection, status: str) -> tuple[int, list[date]]:
    """(accounts with `status`, the sorted days of their product events)."""
    n = len(conn.execute(select(accounts.c.id).where(accounts.c.status == status)).all())
    days = conn.execute(
        select(events.c.occurred_at)
        .select_from(events.join(accounts, accounts.c.id == events.c.account_id))
        .where(accounts.c.status == status, events.c.name.in_(PRODUCT))
    ).scalars()
    return n, sorted(d.date() for d in days)


def _in(days: list[date], start: date, end: date) -> int:
    """Events on days in [start, end)."""
    return bisect_left(days, end) - bisect_left(days, start)


def test_customers_who_stay_are_as_active_months_ago_as_today(demo: Engine) -> None:
    with demo.connect() as conn:
        _, days = _product_days(conn, "active")
    today = NOW.date()
    recent = _in(days, today - timedelta(days=60), today)
    # Two months, most of a year ago: stayers had fewer accounts signed then (contracts start
    # during the year), so the bar is lenient — but not "a sixth as active".
    earlier = _in(days, today - timedelta(days=300), today - timedelta(days=240))
    assert earlier > 0.5 * recent, (earlier, recent)


def test_churners_are_less_active_than_stayers_on_the_same_dates_before_they_leave(demo: Engine) -> None:
    with demo.connect() as conn:
        n_stay, stay_days = _product_days(conn, "active")
        churns = conn.execute(select(accounts.c.id, accounts.c.churned_on).where(accounts.c.status == "churned")).all()
        churner_days: dict[int, list[date]] = {}
        for account_id, at in conn.execute(
            select(events.c.account_id, events.c.occurred_at)
            .select_from(events.join(accounts, accounts.c.id == events.c.account_id))
            .where(accounts.c.status == "churned", events.c.name.in_(PRODUCT))
        ):
            churner_days.setdefault(account_id, []).append(at.date())
    assert churns
    churner, stayer = 0.0, 0.0
    for account_id, churned_on in churns:
        start, end = churned_on - timedelta(days=45), churned_on
        mine = sorted(churner_days.get(account_id, []))
        churner += _in(mine, start, end)
        stayer += _in(stay_days, start, end) / n_stay
    # Per account over the 45 days before each churn: the churners' activity has faded.
    assert churner / len(churns) < 0.6 * stayer / len(churns), (churner / len(churns), stayer / len(churns))


def test_a_churners_overdue_invoice_comes_weeks_before_it_leaves(demo: Engine) -> None:
    with demo.connect() as conn:
        leads = [
            (churned_on - at.date()).days
            for at, churned_on in conn.execute(
                select(events.c.occurred_at, accounts.c.churned_on)
                .select_from(events.join(accounts, accounts.c.id == events.c.account_id))
                .where(accounts.c.status == "churned", events.c.name == "invoice_overdue")
            )
        ]
    assert leads
    # A cause precedes its effect by weeks: a signal a day before the churn predicts nothing.
    assert median(leads) >= 14, leads
