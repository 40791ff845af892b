"""Entry rules: default, once_ever, once_per, allow_concurrent — when a subject may enter again."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, update

from engine.store.models import accounts
from tests.factories import Store
from tests.language.helpers import compiled, complete_all, playbook_yaml, run

NOW = datetime(2026, 11, 23, 9, 0)
DAY = timedelta(days=1)
YEAR = timedelta(days=365)


def test_condition_trigger_entry_rules(db: Engine) -> None:
    store = Store(db, NOW)
    tech = store.account(tier="tech_touch")
    store.account(tier="high_touch")
    trigger = "{tier: tech_touch}"
    default = compiled(playbook_yaml(trigger, pid="cond-default"))
    once_per = compiled(playbook_yaml(trigger, entry="{once_per: 30d}", pid="cond-once-per"))
    concurrent = compiled(playbook_yaml(trigger, entry="{once_per: 30d, allow_concurrent: true}", pid="cond-conc"))

    # A condition that holds enters once ever by default (its occurrence key is empty).
    assert run(db, default, NOW) == [(tech, "")]
    assert run(db, once_per, NOW) == [(tech, "2026-11-23")]
    assert run(db, concurrent, NOW) == [(tech, "2026-11-23")]
    assert run(db, once_per, NOW + 31 * DAY) == []  # the period is over, but it is still in the journey
    assert run(db, concurrent, NOW + 30 * DAY - timedelta(minutes=1)) == []  # not before the period ends
    assert run(db, concurrent, NOW + 30 * DAY) == [(tech, "2026-12-23")]  # concurrent: enters while active
    complete_all(db)
    assert run(db, default, NOW + 400 * DAY) == []
    assert run(db, once_per, NOW + 31 * DAY) == [(tech, "2026-12-24")]
    complete_all(db)
    assert run(db, once_per, NOW + 60 * DAY) == []  # 29 days after the last entry
    assert run(db, once_per, NOW + 61 * DAY) == [(tech, "2027-01-23")]
    assert run(db, concurrent, NOW + 30 * DAY + timedelta(hours=1)) == []  # the period restarts at each entry


def test_date_trigger_entry_rules(db: Engine) -> None:
    store = Store(db, NOW)
    soon = store.account(renewal_date=(NOW + 90 * DAY).date())
    store.account(renewal_date=(NOW + 200 * DAY).date())
    trigger = "{date: renewal_date, offset: -90d}"
    default = compiled(playbook_yaml(trigger, pid="date-default"))
    once_ever = compiled(playbook_yaml(trigger, entry="{once_ever: true}", pid="date-once-ever"))
    concurrent = compiled(playbook_yaml(trigger, entry="{allow_concurrent: true}", pid="date-concurrent"))
    once_per = compiled(playbook_yaml(trigger, entry="{once_per: 400d}", pid="date-once-per"))
    first_key = (NOW + 90 * DAY).date().isoformat()
    for pb in (default, once_ever, concurrent, once_per):
        assert run(db, pb, NOW) == [(soon, first_key)]
        assert run(db, pb, NOW + DAY) == []

    next_year = NOW + YEAR
    next_renewal = (next_year + 90 * DAY).date()
    with db.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.id == soon).values(renewal_date=next_renewal))
    assert run(db, default, next_year) == []  # still in last year's journey
    assert run(db, concurrent, next_year) == [(soon, next_renewal.isoformat())]  # a new occurrence, concurrently
    complete_all(db)
    assert run(db, default, next_year) == [(soon, next_renewal.isoformat())]
    assert run(db, once_ever, next_year) == []
    assert run(db, once_per, next_year) == []  # 365 days since the last entry < 400
    assert run(db, once_per, next_year + 6 * DAY) == []  # …for as long as the renewal is in its 7-day window
    assert run(db, concurrent, next_year) == []  # each occurrence once, concurrent or not


def test_contact_subject_once_ever(db: Engine) -> None:
    store = Store(db, NOW)
    account = store.account(renewal_date=(NOW + 30 * DAY).date())
    admin = store.contact(account, "admin")
    champion = store.contact(account, "champion")
    store.contact(account, "user")
    other = store.account(renewal_date=(NOW + 31 * DAY).date())
    late_admin = store.contact(other, "admin")
    pb = compiled(
        playbook_yaml(
            "{date: account.renewal_date, offset: -30d}",
            subject="contact",
            segment="{role: {in: [admin, champion]}}",
            entry="{once_ever: true}",
        )
    )
    key = (NOW + 30 * DAY).date().isoformat()
    assert run(db, pb, NOW) == [(admin, key), (champion, key)]
    assert run(db, pb, NOW + DAY) == [(late_admin, (NOW + 31 * DAY).date().isoformat())]
    complete_all(db)
    with db.begin() as conn:
        conn.execute(update(accounts).values(renewal_date=(NOW + YEAR + 30 * DAY).date()))
    assert run(db, pb, NOW + YEAR) == []
