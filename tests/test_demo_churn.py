"""The demo store's year of churn, on SQLite and PostgreSQL: churned accounts with a churn day in
the past year, no activity after it and activity fading before it, and a year of closed tasks."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, select

from demo.data import generate
from engine.store.models import accounts, events, tasks

NOW = datetime(2026, 11, 23)
PRODUCT = ("login", "page_view", "feature_used")


def test_churned_accounts_leave_in_the_past_year_and_fade_before(db: Engine) -> None:
    generate(db, accounts=600, seed=7, now=NOW)
    with db.connect() as conn:
        churned = conn.execute(
            select(accounts.c.id, accounts.c.churned_on, accounts.c.renewal_date, accounts.c.contract_start).where(
                accounts.c.status == "churned"
            )
        ).all()
        active_without_day = conn.execute(
            select(func.count()).where(accounts.c.status == "active", accounts.c.churned_on.is_not(None))
        ).scalar_one()
        after = conn.execute(
            select(func.count())
            .select_from(events.join(accounts, accounts.c.id == events.c.account_id))
            .where(accounts.c.status == "churned", events.c.occurred_at > accounts.c.churned_on)
        ).scalar_one()

        def product_events(status: str, last_days_of: str) -> float:
            """Product events per account in the 30 days before its churn day (or before now)."""
            window = (
                and_(events.c.occurred_at < accounts.c.churned_on, events.c.occurred_at >= NOW - timedelta(days=400))
                if last_days_of == "churn"
                else events.c.occurred_at >= NOW - timedelta(days=30)
            )
            rows = conn.execute(
                select(events.c.occurred_at, accounts.c.churned_on)
                .select_from(events.join(accounts, accounts.c.id == events.c.account_id))
                .where(accounts.c.status == status, events.c.name.in_(PRODUCT), window)
            ).all()
            recent = [r for r in rows if ((r.churned_on or NOW.date()) - r.occurred_at.date()).days <= 30]
            n = conn.execute(select(func.count()).where(accounts.c.status == status)).scalar_one()
            return len(recent) / n

        before_churn, last_month = product_events("churned", "churn"), product_events("active", "now")
    assert 0.05 * 600 < len(churned) < 0.25 * 600
    assert active_without_day == 0
    for _, churned_on, renewal, start in churned:
        assert NOW.date() - timedelta(days=331) <= churned_on < NOW.date()
        assert renewal == churned_on and start < churned_on
    assert after == 0
    assert before_churn < 0.5 * last_month  # the fade a health model can see


def test_a_year_of_closed_tasks(db: Engine) -> None:
    generate(db, accounts=300, seed=7, now=NOW)
    with db.connect() as conn:
        rows = conn.execute(select(tasks.c.status, tasks.c.outcome, tasks.c.closed_by, tasks.c.created_at)).all()
    assert rows
    assert {r.status for r in rows} == {"done"}
    assert all(r.outcome and r.closed_by and NOW - timedelta(days=366) < r.created_at < NOW for r in rows)
